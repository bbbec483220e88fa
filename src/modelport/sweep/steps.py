"""Decisions both runners (here and on Ray) make the same way, as plain functions.

Which targets a device times after a build, which rows are settled without timing (a failed
build, a target the device cannot run), and how a device row borrows the build's verdict.
"""

from __future__ import annotations

from typing import Any

from modelport.bench import statuses
from modelport.sweep.outcomes import BuildOutcome
from modelport.sweep.plan import BuildJob
from modelport.sweep.state import DeviceInfo

NODE_LOST = "node lost"


def failed_row(target: str, reason: str) -> dict[str, Any]:
    return {"target": target, "precision": target.rsplit(":", 1)[-1],
            "status": statuses.FAILED, "reason": reason}


def bench_plan(device: DeviceInfo, job: BuildJob, outcome: BuildOutcome
               ) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Targets to time on ``device``, and rows settled without timing."""
    to_time: list[str] = []
    settled: dict[str, dict[str, Any]] = {}
    unavailable = device.probe.get("unavailable") or {}
    for target in job.targets:
        built = outcome.row(target) or {}
        if outcome.error is not None:
            settled[target] = failed_row(target, f"build failed: {outcome.error}")
        elif target not in outcome.bundles:
            reason = built.get("reason") or "no bundle was built"
            settled[target] = {**built, "status": built.get("status") or statuses.FAILED,
                               "reason": f"build: {reason}"}
        elif unavailable.get(target):
            settled[target] = {"target": target, "precision": built.get("precision"),
                               "size_mb": built.get("size_mb"), "build_s": built.get("build_s"),
                               "status": statuses.UNAVAILABLE, "available": False,
                               "reason": unavailable[target]}
        else:
            to_time.append(target)
    return to_time, settled


def device_row(outcome: BuildOutcome, target: str, row: dict[str, Any],
               bundle: str | None) -> dict[str, Any]:
    """A timed row plus what the build knew: build time, and a budget miss stays visible."""
    built = outcome.row(target) or {}
    row = {**row, "build_s": built.get("build_s"), "bundle": bundle}
    if built.get("search"):  # --optimize: the candidates, their figures and the choice
        row["search"] = built["search"]
    if row.get("status") == statuses.OK and built.get("status") == statuses.BELOW_BUDGET:
        row.update(status=statuses.BELOW_BUDGET, reason=built.get("reason"))
    return row


def wants_reference(device: DeviceInfo, job: BuildJob, outcome: BuildOutcome) -> bool:
    """torch FP32 is timed on devices that have torch, for models that are torch models."""
    if not device.has_torch or not outcome.bundles:
        return False
    reference = outcome.row("torch:cpu:fp32")
    return reference is not None  # an ONNX model's reference is ONNX Runtime: no torch row


def reference_model(job: BuildJob, outcome: BuildOutcome):
    """The model the torch row runs: the recipe's compressed folder, else the model itself."""
    return outcome.reference_model or job.model


def first_blob(outcome: BuildOutcome):
    """Any bundle of the build: its stored samples feed the torch row."""
    return next(iter(outcome.bundles.values()))
