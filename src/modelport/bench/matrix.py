"""`modelport bench MODEL --targets ...`: every registered target, measured the same way.

One run of ``export_steps.export`` builds every available target, evaluates each on the same
evaluation split and times each with the same BenchSettings, so the torch FP32 row and every
speedup come from the same process and the same minutes. Targets that cannot be built here
stay in the table with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport import registry
from modelport.bench import statuses
from modelport.bench.harness import BenchSettings
from modelport.errors import ModelportError, UsageError
from modelport.specs import Precision, Target

if TYPE_CHECKING:
    from modelport.models.prepared import PreparedModel

log = logging.getLogger("modelport")

#: the default matrix settings: batch-1 latency and batch-32 throughput, 2 s each
#: where `bench MODEL` puts bundles of targets that missed their accuracy budget
BELOW_BUDGET_DIR = "below-budget"
MATRIX_BENCH = BenchSettings(batch_sizes=(1, 32), warmup=3, duration=2.0, min_iters=10)


def expand_targets(spec: str | Sequence[str]) -> list[Target]:
    """``all`` = every registered target; ``cpu`` (any device name) = those on that device;
    otherwise a comma-separated list of target names (typos get a suggestion)."""
    names = [spec] if isinstance(spec, str) else list(spec)
    known = registry.all_target_names()
    devices = {n.split(":")[1] for n in known}
    out: list[Target] = []
    for item in (x.strip() for name in names for x in name.split(",")):
        if not item:
            continue
        if item == "all":
            picked = [Target.parse(n) for n in known]
        elif item in devices:
            picked = [Target.parse(n) for n in known if n.split(":")[1] == item]
        else:
            picked = [Target.parse(item)]
        out += [t for t in picked if t not in out]
    if not out:
        raise UsageError("--targets needs 'all', a device like 'cpu', or target names "
                         "(see 'modelport targets')")
    return out


def split_available(targets: Sequence[Target], *, reference_is_torch: bool,
                    cpu_features: Sequence[str] | None = None
                    ) -> tuple[list[Target], list[dict[str, Any]]]:
    """(targets to build, rows for those that cannot be built here or for ``cpu_features``
    (None: this CPU's), with the reason)."""
    build: list[Target] = []
    skipped: list[dict[str, Any]] = []
    for target in targets:
        try:
            backend = registry.get_backend(target.runtime)
            avail = backend.availability(target)
        except ImportError as exc:  # a broken backend module is a row, not a crash
            avail_ok, reason = False, f"backend failed to import: {exc}"
        else:
            avail_ok, reason = avail.ok, avail.reason
            refusal = backend.build_refusal(target, cpu_features) if avail_ok else None
            if refusal:  # e.g. bf16 on a CPU without bf16 arithmetic
                avail_ok, reason = False, refusal
            # the reference runtime's FP32 CPU target *is* the reference row: measure it once
            if (avail_ok and reference_is_torch and not backend.bundleable
                    and target.precision == Precision.FP32 and target.device == "cpu"):
                continue
        if avail_ok:
            build.append(target)
        else:
            skipped.append({"target": str(target), "precision": str(target.precision),
                            "status": statuses.UNAVAILABLE, "available": False,
                            "reason": reason})
    return build, skipped


def bench_model(
    model: str | Path | PreparedModel,
    targets: str | Sequence[str] = "all",
    *,
    report_dir: str | Path,
    calib: str | Path | None = None,
    eval: str | Path | None = None,
    settings: BenchSettings | None = None,
    threads: int | None = None,
    label: str | None = None,
    progress: bool = True,
    plot: bool = True,
    options: Any = None,
    budget: Any = None,
    require_speedup: bool = False,
) -> dict[str, Any]:
    """Build, check and time ``model`` on every available target; write report.json/.md/.png.

    Bundles go to ``report_dir/bundles`` (copy them to a device and run ``modelport bench``
    there to add its numbers with ``modelport report merge``); a target below its accuracy
    budget is measured and kept in the table, but its bundle goes to ``report_dir/below-budget``,
    away from the bundles ready to ship. With ``require_speedup`` an INT8/FP16 target slower
    than its backend's FP32 gets no bundle and NotFasterThanFP32 is raised after the report is
    written. Returns the report dict.
    """
    from modelport.bench.report_doc import new_report, write_report
    from modelport.bench.speed_verdict import NotFasterThanFP32, fastest
    from modelport.export_steps import export
    from modelport.lm_steps import bench_lm_targets
    from modelport.models import PreparedModel, resolve_model

    settings = settings or MATRIX_BENCH
    if threads is not None and settings.threads != threads:
        settings = BenchSettings(**{**settings.__dict__, "threads": threads})
    report_dir = Path(report_dir)
    wanted = expand_targets(targets)
    prepared = model if isinstance(model, PreparedModel) else resolve_model(model)
    wanted, not_applicable = bench_lm_targets(prepared, targets, wanted)  # LM: no TFLite/TRT
    build, skipped = split_available(wanted, reference_is_torch=prepared.module is not None,
                                     cpu_features=getattr(options, "cpu_features", None))
    if not build:
        log.warning("no requested target can be built here; only the reference is measured")
    refused = None
    try:
        result = export(
            prepared, build, out=report_dir / "bundles", calib=calib, eval=eval, force=True,
            allow_accuracy_drop=True, bench=settings, threads=settings.threads,
            progress=progress, keep_going=True, options=options, budget=budget,
            below_budget_out=report_dir / BELOW_BUDGET_DIR, require_speedup=require_speedup,
        ) if build else _reference_only(prepared, calib, eval, settings, report_dir, progress)
    except NotFasterThanFP32 as exc:  # the report is still written, then the refusal raised
        result, refused = exc.result, exc
    rows = [_row(r) for r in result.rows] + skipped + not_applicable
    ref = rows[0]
    evalset = _eval_description(result, ref)
    report = new_report(
        model={"name": prepared.name, "source": prepared.source,
               "task": result.task or prepared.task},  # as judged (--output-kind, unit norm)
        rows=rows, settings=settings.__dict__, source="model", reference=ref["target"],
        fidelity_data=evalset, label=label,
    )
    report["fastest"] = fastest(result.rows)
    write_report(report, report_dir, plot=plot)
    if refused is not None:
        refused.report = report
        raise refused
    return report


def _reference_only(prepared, calib, evalset, settings, report_dir, progress):
    """No target is available: still measure the reference, through the same pipeline."""
    from modelport.export_steps import export

    # the reference runtime's own target, when registered, yields exactly the reference row
    ref_targets = [n for n in registry.all_target_names()
                   if not registry.get_backend(n.split(":")[0]).bundleable]
    if not ref_targets:
        raise ModelportError("no target is available here and no reference runtime is registered")
    result = export(prepared, ref_targets[:1], out=report_dir / "bundles", calib=calib,
                    eval=evalset, force=True, allow_accuracy_drop=True, bench=settings,
                    threads=settings.threads, progress=progress, keep_going=True)
    result.rows = result.rows[:1]
    return result


def _row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out.setdefault("status", statuses.REFERENCE if row.get("reference") else statuses.OK)
    if out.get("fidelity") is not None:
        out["fidelity_on"] = "eval split"
    return out


def _eval_description(result, ref_row: dict[str, Any]) -> dict[str, Any]:
    fid = ref_row.get("fidelity") or {}
    return {"source": "eval split", "samples": fid.get("samples"), "reference": ref_row["target"]}
