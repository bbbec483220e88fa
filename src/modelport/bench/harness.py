"""benchmark(): warmup, fixed iterations or a duration, percentiles, throughput, peak RSS.

Timing is ``perf_counter_ns`` around ``session.infer`` + ``session.synchronize`` only; inputs
are prepared before the timed region and rotated, so caches see fresh data every call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from modelport.errors import UsageError


@dataclass(frozen=True)
class BenchSettings:
    batch_sizes: tuple[int, ...] = (1,)
    warmup: int = 5
    iters: int | None = None
    duration: float | None = 3.0  # seconds per batch size, when iters is None
    min_iters: int = 10
    rotate: int = 8  # distinct input batches cycled through
    threads: int | None = None
    #: None: the latency loop (one synchronous infer at a time). N: the throughput loop
    #: (session.infer_pipelined, per-request latencies, throughput = samples / wall time); the
    #: session must be loaded with the same streams (0 = the runtime's THROUGHPUT hint picks).
    streams: int | None = None

    def __post_init__(self) -> None:
        if self.iters is not None and self.iters < 1:
            raise UsageError("--iters must be at least 1")
        if self.iters is None and (self.duration is None or self.duration <= 0):
            raise UsageError("give --iters N or a positive --duration S")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise UsageError("batch sizes must be positive integers, e.g. --batch 1,8,32")
        if self.rotate < 1:
            raise UsageError("--rotate must be at least 1 (1 = reuse one input batch)")
        if self.streams is not None and self.streams < 0:
            raise UsageError("--streams must be 0 (the runtime picks) or a positive integer")


@dataclass
class LatencyStats:
    batch: int
    iters: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    throughput: float  # samples per second = batch / mean latency

    @classmethod
    def from_ns(cls, batch: int, times_ns: list[int], *,
                throughput: float | None = None) -> LatencyStats:
        """``throughput`` overrides batch / mean latency (pipelined runs: samples / wall time)."""
        ms = np.asarray(times_ns, dtype=np.float64) / 1e6
        return cls(
            batch=batch, iters=len(ms),
            p50_ms=float(np.percentile(ms, 50)), p90_ms=float(np.percentile(ms, 90)),
            p99_ms=float(np.percentile(ms, 99)), mean_ms=float(ms.mean()),
            std_ms=float(ms.std()), min_ms=float(ms.min()),
            throughput=float(throughput if throughput is not None else batch * 1000.0 / ms.mean()),
        )


@dataclass
class BenchResult:
    label: str
    stats: list[LatencyStats]
    settings: dict[str, Any]
    peak_rss_mb: float
    load_s: float | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    #: "window": since the caller's reset_peak() (this target alone); "process": the process max
    peak_rss_scope: str = "process"

    def at(self, batch: int) -> LatencyStats | None:
        return next((s for s in self.stats if s.batch == batch), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_feeds(
    pool: Mapping[str, np.ndarray], batch: int, count: int
) -> list[dict[str, np.ndarray]]:
    """``count`` distinct batches of ``batch`` rows cycled from a pool of sample rows."""
    rows = len(next(iter(pool.values())))
    feeds = []
    for k in range(count):
        index = np.arange(k * batch, (k + 1) * batch) % rows
        feeds.append({n: np.ascontiguousarray(a[index]) for n, a in pool.items()})
    return feeds


def benchmark(
    session,
    pool: Mapping[str, np.ndarray],
    settings: BenchSettings | None = None,
    *,
    label: str = "",
    load_s: float | None = None,
    progress: bool = True,
) -> BenchResult:
    """Time ``session`` on batches drawn from ``pool`` (name -> array of sample rows)."""
    from tqdm import tqdm

    from modelport.bench.fingerprint import fingerprint
    from modelport.bench.memory import peak_rss_mb

    settings = settings or BenchSettings()
    stats = []
    for batch in settings.batch_sizes:
        feeds = make_feeds(pool, batch, settings.rotate)
        if settings.streams is not None:
            stats.append(_pipelined(session, feeds, batch, settings, label, progress))
            continue
        for i in range(settings.warmup):
            session.infer(feeds[i % len(feeds)])
        session.synchronize()
        times: list[int] = []
        bar = tqdm(
            total=settings.iters if settings.iters else round(settings.duration, 1),
            desc=f"benchmarking {label} batch {batch}", unit="it" if settings.iters else "s",
            leave=False, disable=not progress, mininterval=0.5,
            bar_format="{l_bar}{bar}| {n:.1f}/{total}" if not settings.iters else None,
        )
        deadline = time.perf_counter_ns() + int((settings.duration or 0) * 1e9)
        i = 0
        while True:
            feed = feeds[i % len(feeds)]
            t0 = time.perf_counter_ns()
            session.infer(feed)
            session.synchronize()
            t1 = time.perf_counter_ns()
            times.append(t1 - t0)
            i += 1
            if settings.iters:
                bar.update(1)
                if i >= settings.iters:
                    break
            else:
                elapsed = settings.duration - (deadline - t1) / 1e9
                bar.update(max(0.0, min(settings.duration, elapsed) - bar.n))
                if t1 >= deadline and i >= settings.min_iters:
                    break
        bar.close()
        stats.append(LatencyStats.from_ns(batch, times))
    peak, scope = peak_rss_mb()
    return BenchResult(
        label=label, stats=stats,
        settings={k: v for k, v in asdict(settings).items()},
        peak_rss_mb=peak, load_s=load_s, fingerprint=fingerprint(), peak_rss_scope=scope,
    )


def _pipelined(session, feeds: list[dict[str, np.ndarray]], batch: int, settings: BenchSettings,
               label: str, progress: bool) -> LatencyStats:
    """Throughput loop: chunks of feeds through ``session.infer_pipelined`` (async runtimes keep
    ``session.requests`` in flight), timed by wall clock; latencies are per request."""
    from tqdm import tqdm

    in_flight = max(1, int(getattr(session, "requests", 1)))
    chunk = [feeds[i % len(feeds)] for i in range(max(len(feeds), 4 * in_flight))]
    session.infer_pipelined(chunk[: max(settings.warmup, in_flight)])
    bar = tqdm(total=settings.iters or round(settings.duration, 1), leave=False,
               desc=f"benchmarking {label} batch {batch} ({in_flight} in flight)",
               disable=not progress, mininterval=0.5)
    latencies: list[int] = []
    wall = 0
    while True:
        t0 = time.perf_counter_ns()
        latencies.extend(session.infer_pipelined(chunk))
        wall += time.perf_counter_ns() - t0
        bar.update(len(chunk) if settings.iters else min(wall / 1e9, settings.duration) - bar.n)
        if settings.iters and len(latencies) >= settings.iters:
            break
        if not settings.iters and wall >= settings.duration * 1e9 and len(latencies) >= settings.min_iters:
            break
    bar.close()
    return LatencyStats.from_ns(batch, latencies, throughput=batch * len(latencies) * 1e9 / wall)
