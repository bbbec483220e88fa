"""One report for the whole sweep: a run per device, a row per (device, target).

Each device's rows become a single-machine report (``new_report``) whose run carries that
device's fingerprint and the Ray node it ran on; ``merge_reports`` folds them into one.
Speedups are computed per device against torch FP32 timed on that device when it has torch,
else against the fastest FP32 artifact timed there; the run's ``reference`` says which.
"""

from __future__ import annotations

from typing import Any

from modelport.bench.speed_verdict import judge_rows
from modelport.sweep.plan import BuildJob, SweepSpec
from modelport.sweep.reference_task import TARGET as TORCH_TARGET
from modelport.sweep.state import DeviceInfo, SweepResults
from modelport.sweep.steps import NODE_LOST, failed_row

#: the fingerprint of a device whose node was lost before it answered its probe
UNKNOWN_MACHINE = {"cpu": "unknown (no answer to the probe)", "cpu_flags": [],
                   "cpu_kind": "unknown", "logical_cores": None, "machine": "unknown", "os": "unknown",
                   "python": "unknown", "versions": {}}


def build_report(spec: SweepSpec, devices: list[DeviceInfo], jobs: list[BuildJob],
                 results: SweepResults) -> dict[str, Any]:
    from modelport.bench.report_doc import merge_reports, new_report

    several = len({(j.model.spec, j.recipe.spec if j.recipe else None) for j in jobs}) > 1
    model = results.model or {"name": jobs[0].model.spec if jobs else None}
    if several:
        model = {"name": ", ".join(dict.fromkeys(j.label for j in jobs)), "source": None,
                 "task": model.get("task")}
    reports = []
    for device in devices:
        rows: list[dict[str, Any]] = []
        bases: list[str] = []
        for job in _jobs_of(device, jobs):
            group = [results.rows[(device.name, job.key, t)]
                     for t in (TORCH_TARGET, *job.targets)
                     if (device.name, job.key, t) in results.rows]
            done = {r["target"] for r in group}
            group += [failed_row(t, NODE_LOST if device.lost else "no result came back")
                      for t in job.targets if t not in done]
            bases.append(add_speedups(group))
            # INT8/FP16/BF16 vs the same runtime's FP32 timed on this device (built for it)
            judge_rows(group, added=spec.compare_only)
            if several:
                group = [{**r, "target": f"{r['target']} [{job.label}]"} for r in group]
            rows += group
        samples = next((r["fidelity"].get("samples") for r in rows if r.get("fidelity")), None)
        report = new_report(
            model=model, rows=rows, settings=spec.settings, source="bundles",
            reference="; ".join(dict.fromkeys(b for b in bases if b)) or None,
            fidelity_data={"source": "bundle samples", "samples": samples,
                           "reference": "reference outputs stored in each bundle at build time"},
            label=device.name)
        nodes = sorted(results.nodes.get(device.name, ()))
        report["runs"][0]["fingerprint"] = device.probe.get("fingerprint") or UNKNOWN_MACHINE
        # where its benches ran; the probe's node when none ran (a node lost early)
        report["runs"][0]["ray_node_id"] = nodes[0] if len(nodes) == 1 else (nodes or
                                                                             device.node_id)
        reports.append(report)
    return merge_reports(reports)


def _jobs_of(device: DeviceInfo, jobs: list[BuildJob]) -> list[BuildJob]:
    """The builds a device times; one per (model, recipe) when it was lost before its probe."""
    if device.probe:
        return [j for j in jobs if j.cpu_kind == device.cpu_kind]
    return list({(j.model.spec, j.recipe.spec if j.recipe else None): j for j in jobs}.values())


def add_speedups(rows: list[dict[str, Any]]) -> str | None:
    """Speedups of one device's rows for one build; returns what they are relative to."""
    timed = [r for r in rows if r.get("p50_ms") and r.get("status") in (
        "ok", "reference", "below budget", "slower than fp32")]
    base = next((r for r in timed if r["target"] == TORCH_TARGET), None)
    label = TORCH_TARGET if base else None
    if base is None:
        fp32 = [r for r in timed if r.get("precision") == "fp32"]
        base = min(fp32, key=lambda r: r["p50_ms"], default=None)
        if base is None:
            return None
        label = f"the fastest FP32 artifact on this device, {base['target']} (no torch here)"
    for row in timed:
        if row.get("latency_batch") == base.get("latency_batch"):
            row["speedup_latency"] = base["p50_ms"] / row["p50_ms"]
        if row.get("throughput") and base.get("throughput") and \
                row.get("throughput_batch") == base.get("throughput_batch"):
            row["speedup_throughput"] = row["throughput"] / base["throughput"]
    return label
