"""Benchmark a bundle from the bundle alone: its runtime, its stored samples, no torch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from modelport.bench.harness import BenchSettings, benchmark
from modelport.bench.table import fmt_num, render
from modelport.errors import BundleError


def bench_bundle(
    path: str | Path,
    *,
    batch_sizes: tuple[int, ...] = (1,),
    iters: int | None = None,
    duration: float | None = None,
    warmup: int = 5,
    threads: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    from modelport.bundle import open_bundle
    from modelport.shapes import fit_arrays, static_batch

    bundle = open_bundle(path)
    pool, _ = bundle.samples()
    if not pool:
        raise BundleError(f"{bundle.path} stores no sample inputs to benchmark with")
    static = static_batch(bundle.inputs, None)
    if static is not None and tuple(batch_sizes) != (static,):
        batch_sizes = (static,)  # static-shape artifact: only its own batch size runs
    settings = BenchSettings(batch_sizes=tuple(batch_sizes), warmup=warmup, iters=iters,
                             duration=None if iters else (duration or 3.0), threads=threads)
    t0 = time.perf_counter()
    session = bundle.session(threads=threads)
    load_s = time.perf_counter() - t0
    with session:
        result = benchmark(session, fit_arrays(pool, bundle.inputs), settings,
                           label=bundle.manifest["target"], load_s=load_s, progress=progress)
    rows = [{"target": bundle.manifest["target"], **s.__dict__} for s in result.stats]
    table = render(rows, [
        ("target", "target", str), ("batch", "batch", str), ("iters", "iters", str),
        ("p50_ms", "p50 ms", fmt_num(3)), ("p90_ms", "p90 ms", fmt_num(3)),
        ("p99_ms", "p99 ms", fmt_num(3)), ("mean_ms", "mean ms", fmt_num(3)),
        ("std_ms", "std ms", fmt_num(3)), ("throughput", "samples/s", fmt_num(1)),
    ])
    table += f"\n(load {load_s:.2f}s, peak RSS {result.peak_rss_mb:.0f} MB, " \
             f"{result.fingerprint.get('cpu', '')})"
    return {"bundle": str(bundle.path), "target": bundle.manifest["target"],
            "result": result.to_dict(), "table": table}
