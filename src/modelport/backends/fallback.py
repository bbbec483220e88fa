"""Sensitivity-ranked float fallback: keep the FEWEST layers in float until the budget holds.

Shared by every backend that can leave single layers unquantized (ONNX Runtime static QDQ:
``nodes_to_exclude``; OpenVINO: NNCF ``ignored_scope``; TensorRT's Q/DQ graph). A backend
hands over

- ``ranking``: its layers (``Unit``), most sensitive first: its own ranking (TensorRT: the
  quantization SNR of each layer's input), or ``rank_by_isolation`` here (each layer
  quantized alone, every other one float: the error that layer's quantization alone adds);
- ``evaluate(units)``: build the INT8 graph with these units in float and return
  ``metrics.fidelity`` against the float graph on a probe slice of the calibration data
  (never the evaluation split, which judges the bundle afterwards);

and ``find_fewest`` returns the smallest float set that meets the budget, judged by
``metrics.budget_misses`` (the same verdict the export applies to the target), aimed a little
inside it (``with_headroom``: the probe is calibration data, the evaluation split judges):

1. all ``most`` top-ranked units float: if that misses, no prefix meets the budget, and the
   best effort is the measured prefix ``closest`` to the float graph (more float layers are
   not always closer; decisions count where they differ beyond the probe's noise, else
   cosine);
2. binary search for the smallest k whose top-k prefix meets the budget; the boundary is
   checked (top-k meets, top-(k-1) misses), so a non-monotone ranking cannot hide there;
3. greedy pruning with verification: each unit of that prefix is dropped from the float set
   while the rest still meets the budget, repeated until a full pass drops none. The result
   is minimal: taking any one unit out of it misses the budget (every such set was measured).

About 1 + log2(most) + 2k builds for k units kept float (each cached by its set). Before
ranking, ``out_of_reach`` spends one build with every candidate float: if even that misses,
no search can succeed and none is run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("modelport")

#: calibration samples the ranking and every trial build are measured on
PROBE_SAMPLES = 64
#: the default most layers kept in float (per-backend option ``max_fallback``; 0 turns it off)
DEFAULT_MAX_FALLBACK = 8
#: share of the budget's allowance the search keeps in reserve: the probe is calibration data,
#: which flatters INT8, and the evaluation split judges the target afterwards. Measured on
#: MiniLM's TensorRT Q/DQ graph: the fewest layers meeting mean cosine 0.99 on the probe gave
#: 0.9898 on held-out sentences; aiming at 0.992 keeps the held-out verdict.
HEADROOM = 0.2


#: up to this many layers, a backend with cheap trials (ONNX Runtime) measures every prefix
#: for the best effort when none meets the budget (``find_fewest(every_prefix=...)``)
BEST_EFFORT_EVERY = 12
#: calibration sets smaller than this are not split: the validation slice is the whole set
MIN_SPLIT = 12


def validation_split(calib, *, hold_apart: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """(fit, validation, record). ``hold_apart``: the calibration data's last third, at most
    ``PROBE_SAMPLES``, is the validation slice that judges recipe variants and fallback trials,
    and the rest fits the recipe's statistics (below ``MIN_SPLIT`` samples nothing is held
    apart). Without it (no recipe statistics to keep it from), the probe is the first
    ``PROBE_SAMPLES``. Never the evaluation split, which judges the target afterwards."""
    n = len(calib)
    if not hold_apart or n < MIN_SPLIT:
        probe = calib.take(PROBE_SAMPLES)
        why = f" (fewer than {MIN_SPLIT}: none held apart)" if hold_apart else ""
        return calib, probe, {"samples": len(probe), "held_apart": False,
                              "slice": f"first {len(probe)} calibration samples{why} (never "
                                       "the evaluation split)"}
    size = min(PROBE_SAMPLES, n // 3)
    fit = calib.subset(list(range(n - size)), "fit")
    validation = calib.subset(list(range(n - size, n)), "validation")
    return fit, validation, {
        "samples": size, "held_apart": True,
        "slice": f"last {size} of {n} calibration samples (never the evaluation split; held "
                 "apart from the CNN recipe's statistics)"}


def with_headroom(budget):
    """The budget the search aims at: each allowance (1 - min cosine, 1 - min top-1
    agreement, max accuracy drop) shrunk by ``HEADROOM``. Judged by ``metrics.budget_misses``
    as the export judges, so every term the Budget has counts."""
    import dataclasses

    keep = 1.0 - HEADROOM
    changes = {"min_cosine": 1.0 - keep * (1.0 - budget.min_cosine),
               "max_accuracy_drop": keep * budget.max_accuracy_drop}
    if hasattr(budget, "min_top1_agreement"):
        changes["min_top1_agreement"] = 1.0 - keep * (1.0 - budget.min_top1_agreement)
    return dataclasses.replace(budget, **changes)


def aimed_at(budget) -> dict[str, float]:
    """The search budget's limits, for the manifest."""
    keys = ("min_cosine", "min_top1_agreement", "max_accuracy_drop")
    return {k: round(float(getattr(budget, k)), 6) for k in keys if hasattr(budget, k)}


@dataclass
class Unit:
    """One layer the backend can keep in float: a name, the node names its quantizer excludes,
    and the sensitivity it was ranked by (larger = worse; ``detail``: how it was measured)."""

    name: str
    nodes: tuple[str, ...]
    sensitivity: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


Metrics = dict[str, Any]
Evaluate = Callable[[Sequence[Unit]], Metrics]


def error_of(metrics: Metrics) -> tuple[float, ...]:
    """How far ``metrics`` are from the float graph, worst = largest: the decision metrics
    first (accuracy drop, top-1 disagreement: what a classifier budget judges), then the
    cosine gap, which is continuous and breaks their ties."""
    return (float(metrics.get("accuracy_drop", 0.0)),
            1.0 - float(metrics.get("top1_agreement", 1.0)),
            1.0 - float(metrics.get("cosine_mean", 1.0)))


def rank_by_isolation(candidates: Sequence[Unit], isolate: Callable[[Unit], Metrics]) -> list[Unit]:
    """Rank ``candidates`` worst first by ``isolate(unit)``: the metrics of the graph with only
    that unit quantized. Its sensitivity is the cosine gap; ties follow ``error_of``."""
    scored = []
    for unit in candidates:
        metrics = isolate(unit)
        unit.sensitivity = round(1.0 - float(metrics.get("cosine_mean", 1.0)), 8)
        unit.detail = {**unit.detail, **_short(metrics)}
        scored.append((error_of(metrics), unit))
    scored.sort(key=lambda item: item[0], reverse=True)
    return [unit for _, unit in scored]


def find_fewest(ranking: Sequence[Unit], evaluate: Evaluate, budget, most: int, *,
                before: Metrics, ranked_by: str, probe: str,
                every_prefix: int = 0) -> dict[str, Any]:
    """The fewest units of ``ranking`` kept float that meet ``budget`` (see the module doc;
    callers pass ``with_headroom`` of the target's budget).

    ``before``: the metrics with every unit quantized (it missed the budget). ``evaluate`` is
    called last with the returned float set, so the backend's output file holds that build.
    ``every_prefix``: when none meets, up to this many layers every prefix is measured for
    the best effort (cheap trials: ONNX Runtime), else all, half, a quarter, ..., none.
    Returns the manifest record."""
    from modelport.metrics import budget_misses

    most = min(int(most), len(ranking))
    builds = [0]
    seen: dict[frozenset[str], Metrics] = {frozenset(): before}
    last: list[frozenset[str]] = []

    def measure(units: Sequence[Unit]) -> Metrics:
        key = frozenset(u.name for u in units)
        if key not in seen:
            seen[key] = evaluate(units)
            last[:] = [key]
            builds[0] += 1
            log.info("  %d layer(s) in float: %s", len(units), _summary(seen[key]))
        return seen[key]

    def meets(units: Sequence[Unit]) -> bool:
        return not budget_misses(measure(units), budget)

    chosen: list[Unit] = list(ranking[:most])
    met = most > 0 and meets(chosen)
    if met:
        lo, hi = 0, most  # top-lo misses (lo = 0: ``before``), top-hi meets
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if meets(ranking[:mid]):
                hi = mid
            else:
                lo = mid
        chosen = list(ranking[:hi])
        chosen = _prune(chosen, meets)
    else:
        chosen = _best_effort(ranking[:most], measure, every_prefix)
    final = measure(chosen)
    if last and last[0] != frozenset(u.name for u in chosen):
        evaluate(chosen)  # the backend's file must hold the chosen build
        builds[0] += 1
    rank = {u.name: i + 1 for i, u in enumerate(ranking)}
    return {
        "needed": True, "met": met, "max_fallback": most, "ranked_by": ranked_by,
        "probe": probe, "trial_builds": builds[0], "aimed_at": aimed_at(budget),
        "metric_before": _short(before), "metric_after": _short(final),
        "kept_float": [{"name": u.name, "rank": rank[u.name], "sensitivity": u.sensitivity,
                        "nodes": list(u.nodes), **u.detail} for u in chosen],
        "ranking": [{"name": u.name, "rank": rank[u.name], "sensitivity": u.sensitivity}
                    for u in ranking[:max(2 * most, 8)]],
    }


def out_of_reach(candidates: Sequence[Unit], evaluate: Evaluate, budget, before: Metrics,
                 most: int, probe: str) -> dict[str, Any] | None:
    """One build with EVERY candidate in float, before any ranking: if even that misses the
    budget, no subset of them can meet it (what stays quantized breaks it), and the ranking's
    one build per layer is not spent (static INT8 on MiniLM: 250 s of builds for nothing).
    Returns the manifest record then, else None."""
    from modelport.metrics import budget_misses

    if not candidates:
        return {"needed": True, "met": False, "max_fallback": int(most), "probe": probe,
                "aimed_at": aimed_at(budget), "metric_before": _short(before),
                "kept_float": [], "why": "no layer the backend can keep in float"}
    every = evaluate(candidates)
    misses = budget_misses(every, budget)
    if not misses:
        return None
    log.info("  even with all %d layers in float: %s; no float fallback can meet the budget",
             len(candidates), _summary(every))
    return {"needed": True, "met": False, "max_fallback": int(most), "probe": probe,
            "aimed_at": aimed_at(budget), "metric_before": _short(before),
            "metric_all_float": _short(every), "kept_float": [],
            "why": f"with all {len(candidates)} layers in float it still misses: "
                   f"{'; '.join(misses)} (the ops that stay quantized break it)"}


def not_needed(before: Metrics, most: int, probe: str, budget) -> dict[str, Any]:
    """The manifest record when plain INT8 already meets the budget on the probe."""
    return {"needed": False, "max_fallback": int(most), "probe": probe,
            "aimed_at": aimed_at(budget), "metric_before": _short(before), "kept_float": []}


def _best_effort(top: Sequence[Unit], measure: Callable[[Sequence[Unit]], Metrics],
                 every_prefix: int = 0) -> list[Unit]:
    """When even the top ``len(top)`` float miss: of the prefixes (every size when there are
    at most ``every_prefix``, else all, half, a quarter, ..., none), the one ``closest`` to the
    float graph, the fewest on ties. More float layers are not always closer: measured on
    EfficientNet-Lite0's ORT build (validation cosine), none 0.9960, 2 float layers 0.9981,
    3 float layers 0.9874, 8 float layers 0.9979."""
    if len(top) <= every_prefix:
        sizes = list(range(len(top) + 1))
    else:
        sizes, k = [0], len(top)
        while k > 0:
            sizes.append(k)
            k //= 2
        sizes.sort()
    return list(top[:sizes[closest([measure(top[:k]) for k in sizes])]])


def closest(candidates: Sequence[Metrics]) -> int:
    """The index of the candidate closest to the float graph: by decisions (accuracy drop,
    else top-1 disagreement) where they differ beyond the probe's sampling noise, else by
    mean cosine; the first on ties.

    Noise: two candidates whose changed-decision counts d1, d2 differ by at most
    2 sqrt(d1 + d2) (two standard errors of the difference) are tied on decisions. Measured
    why: on EfficientNet-Lite0 (64 validation crops) the ORT builds' top-1 agreement moved by
    one or two crops with no change in cosine, and did not predict agreement on other photos,
    while validation cosine ordered the builds as the evaluation photos' cosine did."""
    def changed(m: Metrics) -> float:
        n = float(m.get("samples", 0) or 0)
        share = m["accuracy_drop"] if "accuracy_drop" in m else 1.0 - m.get("top1_agreement", 1.0)
        return max(float(share), 0.0) * n

    best_decisions = min(changed(m) for m in candidates)
    tied = [i for i, m in enumerate(candidates)
            if changed(m) - best_decisions <= 2.0 * (changed(m) + best_decisions) ** 0.5]
    return min(tied, key=lambda i: (1.0 - float(candidates[i].get("cosine_mean", 1.0)), i))


def decisions_only(record: dict[str, Any], budget) -> bool:
    """An ``out_of_reach`` record whose all-float build misses the budget on decisions alone
    (cosine within it): the layers that stay quantized keep the scores close, and the
    decisions that move are near-ties; a search can still bring the build closer."""
    import dataclasses

    from modelport.metrics import budget_misses

    every = record.get("metric_all_float")
    if not every or not budget_misses(every, budget):
        return False
    scores = {k: v for k, v in every.items() if k not in ("top1_agreement", "accuracy_drop")}
    loose = dataclasses.replace(budget, min_top1_agreement=1e-9) \
        if hasattr(budget, "min_top1_agreement") else budget
    return "accuracy_drop" not in every and not budget_misses(scores, loose)


def _prune(chosen: list[Unit], meets: Callable[[Sequence[Unit]], bool]) -> list[Unit]:
    """Drop units (least sensitive first) while the rest meets the budget, until a full pass
    over the survivors drops none: then every one-smaller set was measured to miss."""
    changed = True
    while changed and chosen:
        changed = False
        for unit in reversed(list(chosen)):
            rest = [u for u in chosen if u is not unit]
            if meets(rest):
                log.info("  %s is not needed in float (the ranking was not monotone here)",
                         unit.name)
                chosen = rest
                changed = True
    return chosen


def _short(metrics: Metrics) -> dict[str, Any]:
    keys = ("cosine_mean", "cosine_min", "top1_agreement", "accuracy", "accuracy_drop",
            "samples")
    return {k: (round(float(metrics[k]), 6) if k != "samples" else int(metrics[k]))
            for k in keys if k in metrics}


def _summary(metrics: Metrics) -> str:
    keys = ("cosine_mean", "top1_agreement", "accuracy_drop")
    return ", ".join(f"{k} {metrics[k]:.4f}" for k in keys if k in metrics)
