"""Interleaved timing: round 1 times every session, then round 2, ...; medians over rounds.

Timing artifacts one after another lets a burst of load from another process (or a CPU that
warms up or throttles) land on one of them only. Interleaving spreads it over all: every
session is timed once per round with the same harness (``bench.harness.benchmark``) and the
figure kept per session and batch is the median over rounds. Odd rounds run the sessions in
reverse order, so no session always follows the same one: what one leaves behind (its runtime's
threads still spinning, caches full of its weights, a CPU clocked up by a batch-32 run) lands
on a different neighbour each round instead of always on the next in line. The recipe search
(``modelport.optimize``) and the experiments (``experiments/int8_recipes.py``) share this.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from modelport.bench.harness import BenchSettings, benchmark


@dataclass
class Timed:
    """One session's medians over the rounds, per batch size."""

    p50_ms: dict[int, float] = field(default_factory=dict)
    throughput: dict[int, float] = field(default_factory=dict)
    rounds: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"p50_ms": {str(b): v for b, v in self.p50_ms.items()},
                "throughput": {str(b): v for b, v in self.throughput.items()},
                "rounds": self.rounds}


def time_interleaved(
    sessions: Mapping[str, Any],
    pool: Mapping[str, np.ndarray],
    settings: BenchSettings | Mapping[str, BenchSettings],
    *,
    rounds: int = 3,
    pools: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    on_round: Callable[[int, int], None] | None = None,
    deadline: float | None = None,
) -> dict[str, Timed]:
    """Time every session in ``rounds`` interleaved rounds; medians of p50 and throughput.

    Args:
        sessions: label -> Session (all open at once).
        pool: sample rows the feeds are drawn from (``pools`` overrides it per label, e.g.
            fitted to an artifact's static shapes).
        settings: one BenchSettings for all, or one per label (batch sizes, streams); its
            ``duration`` is the time per session and batch *per round*.
        on_round: called with (round done, rounds) after each round (progress).
        deadline: ``time.perf_counter()`` value after which no new round starts (at least
            one round always runs).
    """
    per_round: dict[str, dict[int, list[tuple[float, float]]]] = {k: {} for k in sessions}
    done = 0
    for r in range(rounds):
        if r and deadline is not None and time.perf_counter() >= deadline:
            break
        order = list(sessions.items())
        for label, session in (reversed(order) if r % 2 else order):
            s = settings[label] if isinstance(settings, Mapping) else settings
            feed_pool = (pools or {}).get(label, pool)
            result = benchmark(session, feed_pool, s, label=label, progress=False)
            for stats in result.stats:
                per_round[label].setdefault(stats.batch, []).append(
                    (stats.p50_ms, stats.throughput))
        done = r + 1
        if on_round is not None:
            on_round(done, rounds)
    out: dict[str, Timed] = {}
    for label, by_batch in per_round.items():
        timed = Timed(rounds=done)
        for batch, values in by_batch.items():
            timed.p50_ms[batch] = statistics.median(v[0] for v in values)
            timed.throughput[batch] = statistics.median(v[1] for v in values)
        out[label] = timed
    return out


def per_round(settings: BenchSettings, total_duration: float, rounds: int) -> BenchSettings:
    """``settings`` with its duration split over ``rounds`` (what one round spends per batch)."""
    return replace(settings, duration=max(total_duration / max(rounds, 1), 1e-3), iters=None)
