"""The compression search's output folder: the best candidate's compressed-model directory
(weights, compressed.json, recipe.yaml, REPORT.md) plus every candidate in ``search.json``,
in compressed.json's ``search`` (which ``export`` carries into every bundle manifest), in
REPORT.md's table and on ``pareto.png`` (bench/plot.py, as ``bench MODEL`` draws it).

Written into a temp dir and renamed into place (io.publish_dir), so an interrupted run leaves
the previous folder or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("modelport")

#: candidate fields that go into the report (the rest is working state)
FIELDS = ("id", "stage", "mode", "shape", "epochs", "timed_on", "params", "flops", "latency_ms",
          "teacher_ms", "p50_ms", "teacher_p50_ms", "speed", "metric", "keep", "meets", "shortfall", "bundle_mb", "seconds", "passes")


def build_report(state: Any, env: Any) -> dict[str, Any]:
    best = state.best()
    candidates = [{k: c.get(k) for k in FIELDS} for c in state.candidates]
    front = pareto_front(candidates)
    for c in candidates:
        c["on_front"] = c["id"] in front
    far = None
    if best is not None:
        far = {"speed": best["speed"], "speed_goal": state.goal,
               "speed_short_by": max(0.0, state.goal - best["speed"]),
               "keep": best["keep"], "keep_goal": state.keep,
               "keep_short_by": max(0.0, state.keep - best["keep"])}
    return {
        "goal": {"speed": state.goal, "keep": state.keep, "target": state.target,
                 "speed_reference": "torch FP32 teacher at batch 1, this machine, same process, "
                                    "alternating rounds; fastest call of each",
                 "metric": state.metric,
                 "metric_on": "validation slice of the calibration data"},
        "teacher": state.teacher, "data": state.data,
        "settings": _settings(env.settings),
        "stopped": state.stopped, "met": bool(best and all(best["meets"].values())),
        "best": best["id"] if best is not None else None, "best_vs_goal": far,
        "minutes": round((time.monotonic() - state.started) / 60, 2),
        "candidates": candidates,
    }


def pareto_front(candidates: list[dict[str, Any]]) -> set[int]:
    """Ids of the candidates no other one beats in both speed and kept metric."""
    front, best = set(), float("-inf")
    for c in sorted(candidates, key=lambda c: (-c["speed"], -c["keep"])):
        if c["keep"] > best:
            front.add(c["id"])
            best = c["keep"]
    return front


def write_output(out: Path, state: Any, env: Any, *, force: bool) -> dict[str, Any]:
    from modelport.io import publish_dir
    from modelport.passes.storage import MARKER

    report = build_report(state, env)
    best = state.best()
    if best is None:
        raise RuntimeError("no candidate was measured: nothing to write")
    source = Path(best["dir"])

    def fill(tmp: Path) -> None:
        for item in source.iterdir():
            if item.is_file():
                shutil.copy2(item, tmp / item.name)
        manifest = json.loads((tmp / MARKER).read_text("utf-8"))
        manifest["search"] = report
        (tmp / MARKER).write_text(json.dumps(manifest, indent=2, default=str) + "\n", "utf-8")
        (tmp / "search.json").write_text(json.dumps(report, indent=2, default=str) + "\n",
                                         "utf-8")
        with (tmp / "REPORT.md").open("a", encoding="utf-8") as f:
            f.write("\n" + markdown(report) + "\n")
        plot(report, tmp / "pareto.png")

    publish_dir(fill, out, force=force)
    return report


def markdown(report: dict[str, Any]) -> str:
    goal = report["goal"]
    far = report["best_vs_goal"] or {}
    lines = [
        (f"## Compression search: speed {goal['speed']:g}x, keep {goal['keep']:g} of "
        f"{goal['metric']}, timed on {goal['target']}"),
        "",
        f"Stopped: {report['stopped']} after {report['minutes']} min. Best: candidate "
        f"{report['best']} at {far.get('speed', 0):.2f}x and keep {far.get('keep', 0):.3f}"
        + (" (meets both)." if report["met"] else
           f" (short by {far.get('speed_short_by', 0):.2f}x in speed and "
           f"{far.get('keep_short_by', 0):.3f} in keep)."),
        (f"Speed is against the torch FP32 teacher at batch 1 "
        f"({report['teacher']['torch_fp32_b1_ms']:.2f} ms); the metric is measured on the "
        f"validation slice of the calibration data ({report['data']['validation_samples']} "
        "rows), never on the evaluation split."),
        "",
        "| # | stage | shape | timed on | params | FLOPs | b1 ms | speed | metric | keep | front |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in report["candidates"]:
        shape = c["shape"]
        text = (f"{shape['layers']} blocks, -{shape['heads']:.0%} heads, -{shape['ffn']:.0%} FFN"
                if shape else "teacher")
        lines.append(f"| {c['id']} | {c['stage']} | {text} | {c['timed_on']} | "
                     f"{c['params'] / 1e6:.2f}M | {c['flops'] / 1e6:.0f}M | "
                     f"{c['latency_ms']:.2f} | {c['speed']:.2f}x | {c['metric']:.4f} | "
                     f"{c['keep']:.3f} | {'*' if c['on_front'] else ''} |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> bool:
    """pareto.png with bench/plot.py: one point per candidate (colour = stage and target)."""
    from modelport.bench.plot import plot_available, plot_pareto

    if not plot_available():
        log.info("matplotlib missing: no pareto.png (pip install 'modelport[plot]')")
        return False
    rows = [{"machine": "this machine", "target": "teacher: torch:cpu:fp32", "reference": True,
             "p50_ms": report["teacher"]["torch_fp32_b1_ms"], "fidelity": {"keep": 1.0},
             "latency_batch": 1}]
    rows += [{"machine": "this machine", "target": f"{c['stage']}: {c['timed_on']}",
              "p50_ms": c["latency_ms"], "fidelity": {"keep": c["keep"]},
              "size_mb": c.get("bundle_mb"), "latency_batch": 1}
             for c in report["candidates"]]
    name = str(report["teacher"].get("model"))
    plot_pareto({"rows": rows, "model": {"name": f"{name} compression search"}}, path)
    return True


def _settings(settings: Any) -> dict[str, Any]:
    import dataclasses

    return {k: v for k, v in dataclasses.asdict(settings).items()}
