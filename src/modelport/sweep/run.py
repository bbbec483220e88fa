"""``sweep()``: check the request, pack the inputs, run here or on Ray, write one report.

The report is written only when the sweep finished: files go to a temp folder beside the
report directory and are renamed into place, ``report.json`` last, so an interrupted sweep
leaves no report (finished builds stay in the cache, which is what makes a resume cheap).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelport.errors import UsageError
from modelport.sweep.payload import Payload, file_payload, model_payload, text_payload
from modelport.sweep.plan import SweepSpec


def sweep(
    models: Sequence[str],
    targets: Sequence[str],
    *,
    report_dir: str | Path,
    settings: dict[str, Any],
    recipes: Sequence[str] = (),
    calib: str | None = None,
    eval: str | None = None,
    devices: Sequence[str] = (),
    ray_address: str | None = None,
    cache_dir: str | Path | None = None,
    events: str | Path | None = None,
    label: str | None = None,
    quiet: bool = False,
    plot: bool = True,
    output_kind: str | None = None,
    search: Any = None,
) -> dict[str, Any]:
    """Build every (model, recipe) once per CPU kind, time every bundle on every device.
    ``output_kind`` (logits / embedding / regression): what the models' outputs are, for the
    budget verdict (metrics.Budget.output_kind). ``search`` (optimize.SearchSettings,
    ``--optimize``): each target's candidate recipes built on the build node, timed on a device
    of each CPU kind, the winner shipped to that kind's devices (sweep/search_steps.py)."""
    from modelport.bench.report_doc import machine_label
    from modelport.sweep.cache import BuildCache
    from modelport.sweep.progress import Progress
    from modelport.sweep.report import build_report

    if devices and not ray_address:
        raise UsageError("--devices needs --ray ADDRESS (without --ray the sweep runs here, "
                         "on this machine only)")
    if ray_address and not devices:
        raise UsageError("--ray needs --devices NAME[,NAME...]: the devices to benchmark on")
    if ray_address:  # nothing listening there: say so in seconds, not after minutes of silence
        from modelport.sweep.ray_cluster import check_reachable

        check_reachable(ray_address)
    devices = list(dict.fromkeys(devices))
    spec = make_spec(models, targets, recipes, calib, eval, settings, output_kind, search)
    report_dir = Path(report_dir)
    if report_dir.exists() and not report_dir.is_dir():
        raise UsageError(f"--report '{report_dir}' is a file: give a directory")
    cache = BuildCache(Path(cache_dir) if cache_dir else report_dir / "builds")
    progress = Progress(len(devices) or 1, quiet=quiet, events=Path(events) if events else None)
    try:
        if ray_address:
            from modelport.sweep.ray_runner import run_on_ray

            infos, jobs, results = run_on_ray(spec, address=ray_address, devices=list(devices),
                                              cache=cache, progress=progress)
        else:
            from modelport.sweep.local_runner import run_local

            infos, jobs, results = run_local(spec, device=machine_label(label), cache=cache,
                                             progress=progress)
    finally:
        progress.close()
    report = build_report(spec, infos, jobs, results)
    write_report_atomic(report, report_dir, plot=plot)
    progress.event("report", path=str(report_dir / "report.json"))
    return report


def make_spec(models: Sequence[str], targets: Sequence[str], recipes: Sequence[str],
              calib: str | None, eval: str | None, settings: dict[str, Any],
              output_kind: str | None = None, search: Any = None) -> SweepSpec:
    """Parse targets and pack every input once, before anything is scheduled."""
    from modelport.metrics import Budget
    from modelport.specs import Target

    Budget(output_kind=output_kind)  # a bad kind fails now, not on a build node
    search_fields = _search_fields(search)  # a bad --optimize fails now, too

    if not models:
        raise UsageError("give at least one MODEL")
    parsed = [str(Target.parse(t)) for t in targets]
    # torch FP32 is every device's reference row (where torch is installed), not a bundle
    parsed = list(dict.fromkeys(t for t in parsed if not t.startswith("torch:")))
    if not parsed:
        raise UsageError("--targets names no target to build: e.g. "
                         "--targets onnxruntime:cpu:fp32,openvino:cpu:int8")
    from modelport.bench.speed_verdict import comparison_targets

    added = comparison_targets(parsed)  # each device judges INT8/FP16/BF16 against its FP32
    return SweepSpec(
        models=tuple(model_payload(m) for m in models),
        recipes=tuple(_recipe(r) for r in recipes) or (None,),
        targets=tuple(parsed + added),
        calib=_data(calib), eval=_data(eval), settings=dict(settings), output_kind=output_kind,
        compare_only=tuple(added), search=search_fields)


def _search_fields(search: Any) -> dict[str, Any] | None:
    """SearchSettings (or its fields as a dict) -> the fields a build node rebuilds it from."""
    if search is None:
        return None
    from dataclasses import asdict

    from modelport.optimize import SearchSettings

    checked = search if isinstance(search, SearchSettings) else SearchSettings(**dict(search))
    return {k: v for k, v in asdict(checked).items() if k != "candidates_out"}


def _recipe(recipe: str) -> Payload:
    import json

    from modelport.passes.recipes import BUILTIN_RECIPES, load_recipe

    checked = load_recipe(recipe)  # a typo fails now, not on a build node minutes later
    if recipe in BUILTIN_RECIPES:
        return text_payload(recipe, json.dumps(checked, sort_keys=True, default=str))
    return file_payload(recipe, Path(recipe))


def _data(source: str | None) -> Payload | None:
    return None if source is None else file_payload(source, Path(source))


def write_report_atomic(report: dict[str, Any], out: Path, *, plot: bool = True) -> None:
    """report.md, the plot, then report.json: each renamed into ``out`` when complete."""
    from modelport.bench.report_doc import write_report

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".report.tmp-", dir=out))
    try:
        written = write_report(report, tmp, plot=plot)
        from modelport.sweep.search_report import search_markdown

        searches = search_markdown(report)  # --optimize: each device's choice per target
        if searches and "md" in written:
            with open(written["md"], "a", encoding="utf-8") as fh:
                fh.write(searches)
        for key in sorted(written, key=lambda k: k == "json"):  # report.json last
            written[key].replace(out / written[key].name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
