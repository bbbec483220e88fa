"""Is a reduced-precision artifact really faster than its own backend's FP32, in this run?

INT8 exists to be faster. On a CPU without the right instructions (OpenVINO INT8 without VNNI,
see ../shared/FINDINGS.md) it can be slower than FP32 of the same runtime, and a table that
prints that row as ``ok`` ships a regression as a success. Verdicts are taken on benchmark rows
(dicts) recorded in the same run, never on a clock read here, so they test without timing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from modelport import registry
from modelport.bench import statuses
from modelport.errors import ModelportError
from modelport.specs import Precision, Target

if TYPE_CHECKING:
    from modelport.backends.base import Backend

#: slower than FP32 by more than this fraction, at batch 1 or the throughput batch, is flagged;
#: below it the two are within the noise of a short run on a shared machine
TOLERANCE = 0.05
#: precisions that must earn their place by speed
REDUCED = ("int8", "fp16", "bf16")


class NotFasterThanFP32(ModelportError):
    """--require-speedup: an INT8/FP16/BF16 artifact was slower than its backend's FP32 (exit 2)."""


def backend_key(target: str) -> str:
    """``openvino:cpu:int8`` -> ``openvino:cpu``: rows compared only within one runtime+device."""
    return ":".join(str(target).split(" ")[0].split(":")[:2])


def fp32_target(target: str) -> str:
    return f"{backend_key(target)}:fp32"


def speed_verdict(row: dict[str, Any], fp32: dict[str, Any], *,
                  tolerance: float = TOLERANCE) -> dict[str, Any] | None:
    """Ratios of ``row`` to the same backend's ``fp32`` row (> 1: faster); None when no batch
    size was timed by both. ``slower`` is True when either ratio is under 1 - tolerance."""
    verdict: dict[str, Any] = {"vs": fp32.get("target"), "tolerance": tolerance}
    if (row.get("p50_ms") and fp32.get("p50_ms")
            and row.get("latency_batch") == fp32.get("latency_batch")):
        verdict.update(latency_ratio=round(fp32["p50_ms"] / row["p50_ms"], 4),
                       latency_batch=row["latency_batch"])
    if (row.get("throughput") and fp32.get("throughput")
            and row.get("throughput_batch") == fp32.get("throughput_batch")):
        verdict.update(throughput_ratio=round(row["throughput"] / fp32["throughput"], 4),
                       throughput_batch=row["throughput_batch"])
    ratios = [verdict[k] for k in ("latency_ratio", "throughput_ratio") if k in verdict]
    if not ratios:
        return None
    verdict["slower"] = min(ratios) < 1.0 - tolerance
    return verdict


def describe(target: str, verdict: dict[str, Any]) -> str:
    """One line with the numbers: what a refusal or a warning says."""
    parts = []
    if "latency_ratio" in verdict:
        parts.append(f"{verdict['latency_ratio']:.2f}x its speed at batch "
                     f"{verdict['latency_batch']}")
    if "throughput_ratio" in verdict:
        parts.append(f"{verdict['throughput_ratio']:.2f}x its throughput at batch "
                     f"{verdict['throughput_batch']}")
    return (f"{target} is slower than {verdict['vs']} by more than "
            f"{100 * verdict['tolerance']:.0f}% in this run ({', '.join(parts)})")


def apply_verdict(row: dict[str, Any], fp32: dict[str, Any] | None, *,
                  require_speedup: bool, tolerance: float = TOLERANCE) -> bool:
    """Record the verdict on ``row`` (status, ``speed_verdict``); False when the row is refused
    (``require_speedup`` and slower), like an accuracy-budget miss: no bundle, ``failure`` set."""
    if (fp32 is None or str(row.get("precision")) not in REDUCED
            or row.get("status") != statuses.OK):
        return True
    verdict = speed_verdict(row, fp32, tolerance=tolerance)
    if verdict is None:
        return True
    row["speed_verdict"] = verdict
    if not verdict["slower"]:
        return True
    row["status"] = statuses.SLOWER_THAN_FP32
    row["reason"] = describe(row["target"], verdict)
    if not require_speedup:
        return True
    row["failure"] = (f"{row['reason']}; no bundle written (--require-speedup; build for this "
                      "CPU with its recipe, or drop --require-speedup to keep it)")
    return False


def fastest(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The fastest target within budget at batch 1 and at the throughput batch (reference and
    rows below budget, slower than FP32, failed or not run here are not candidates)."""
    ok = [r for r in rows if r.get("status") == statuses.OK and not r.get("reference")]
    out: dict[str, Any] = {}
    lat = [r for r in ok if r.get("speedup_latency")]
    if lat:
        best = max(lat, key=lambda r: r["speedup_latency"])
        out["latency"] = {"target": best["target"], "speedup": best["speedup_latency"],
                          "batch": best.get("latency_batch")}
    thr = [r for r in ok if r.get("speedup_throughput")]
    if thr:
        best = max(thr, key=lambda r: r["speedup_throughput"])
        out["throughput"] = {"target": best["target"], "speedup": best["speedup_throughput"],
                             "batch": best.get("throughput_batch")}
    return out


def fastest_line(best: dict[str, Any]) -> str:
    """The line under the table that names the target to ship on this machine."""
    if not best:
        return ""
    parts = []
    if "latency" in best:
        b = best["latency"]
        parts.append(f"fastest within budget here: {b['target']} ({b['speedup']:.2f}x at batch "
                     f"{b['batch']})")
    if "throughput" in best:
        b = best["throughput"]
        parts.append(f"highest throughput within budget: {b['target']} ({b['speedup']:.2f}x at "
                     f"batch {b['batch']})")
    return "; ".join(parts)


def comparison_targets(targets: Sequence[str]) -> list[str]:
    """The FP32 targets to build beside ``targets`` so that each reduced-precision one has its
    runtime's FP32 to be judged against (a sweep builds here and times on the devices, so what
    can run is the device's question, not this machine's)."""
    have = {str(t) for t in targets}
    added: list[str] = []
    for target in targets:
        fp32 = fp32_target(str(target))
        if (str(target).rsplit(":", 1)[-1] in REDUCED and fp32 not in have
                and fp32 in registry.all_target_names()
                and registry.get_backend(fp32.split(":")[0]).bundleable):
            added.append(fp32)
            have.add(fp32)
    return added


def judge_rows(rows: Sequence[dict[str, Any]], *, added: Sequence[str] = (),
               tolerance: float = TOLERANCE) -> None:
    """The speed verdict on rows timed together (one device, one build): each INT8/FP16/BF16
    row against its runtime's FP32 row among ``rows``; rows of ``added`` targets (built only
    for the comparison) are marked ``added_for_comparison``. Never refuses: a row slower than
    its FP32 gets status ``slower than fp32`` and the reason with the ratios."""
    fp32 = {backend_key(r["target"]): r for r in rows
            if str(r.get("precision")) == "fp32" and (r.get("p50_ms") or r.get("throughput"))}
    for row in rows:
        if row.get("target") in added:
            row["added_for_comparison"] = True
        apply_verdict(row, fp32.get(backend_key(row["target"])), require_speedup=False,
                      tolerance=tolerance)


def with_fp32_comparisons(plan: list[tuple[Target, Backend]], *, timed: bool
                          ) -> tuple[list[tuple[Target, Backend]], set[Target]]:
    """The plan with each backend's FP32 first, adding it (not to be bundled) where an INT8,
    FP16 or BF16 target of that backend needs it for its speed verdict; and the set of added
    targets (torch's FP32 is the reference row, never added)."""
    have = {t for t, _ in plan}
    added: set[Target] = set()
    if timed:
        for target, backend in list(plan):
            fp32 = Target.parse(fp32_target(str(target)))
            if (str(target.precision) in REDUCED and fp32 not in have
                    and backend.bundleable and str(fp32) in registry.all_target_names()
                    and backend.runnable(fp32).ok):
                plan.append((fp32, backend))
                have.add(fp32)
                added.add(fp32)
    # stable: FP32 before the reduced precisions, so a verdict can refuse before bundling
    plan = sorted(plan, key=lambda tb: tb[0].precision != Precision.FP32)
    return plan, added

