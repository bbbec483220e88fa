"""`modelport bench BUNDLE` on the device: the same report, from bundles alone (no torch).

Each bundle carries its artifact, sample inputs and the reference outputs made at build time,
so a device with only the bundle's runtime installed can check fidelity and time it with the
same harness and settings as the build machine, and write a report.json that
``modelport report merge`` folds into the build machine's table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bench.harness import BenchSettings, benchmark
from modelport.bench.memory import reset_peak
from modelport.errors import BundleError, TargetUnavailable, UsageError


def find_bundles(path: str | Path) -> list[Path]:
    """A bundle directory, or a directory of bundles (e.g. a report's ``bundles/``)."""
    from modelport.bundle.archive import is_archive

    path = Path(path)
    if (path / "manifest.json").is_file() or (path.is_file() and is_archive(path)):
        return [path]  # a .tar.gz from `modelport pack` opens like a folder
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if (p / "manifest.json").is_file())
        if found:
            return found
    raise UsageError(f"'{path}' is neither a bundle nor a directory of bundles "
                     "(no manifest.json found)")


def bench_bundles(
    paths: Sequence[str | Path],
    settings: BenchSettings,
    *,
    label: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Benchmark every bundle under ``paths`` with one BenchSettings; return the report dict."""
    from modelport.bench.report_doc import new_report

    bundles = [b for p in paths for b in find_bundles(p)]
    rows: list[dict[str, Any]] = []
    model: dict[str, Any] = {}
    results = []
    for path in bundles:
        row, info = _bench_one(path, settings, progress)
        results.append(row.pop("_result", None))
        rows.append(row)
        if model and info.get("name") != model.get("name"):
            raise UsageError(f"{path} holds model '{info.get('name')}', the others "
                             f"'{model.get('name')}': bench one model's bundles at a time")
        model = model or info
    samples = next((r["fidelity"]["samples"] for r in rows if r.get("fidelity")), None)
    report = new_report(
        model=model, rows=rows, settings=settings.__dict__, source="bundles", reference=None,
        fidelity_data={"source": "bundle samples", "samples": samples,
                       "reference": "reference outputs stored in each bundle at build time"},
        label=label,
    )
    if len(results) == 1 and results[0] is not None:
        report["result"] = results[0]  # one bundle: the harness result as is, for scripts
    return report


def _bench_one(path: Path, settings: BenchSettings, progress: bool
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    from modelport.bundle import open_bundle
    from modelport.metrics import fidelity
    from modelport.shapes import fit_arrays, static_batch

    bundle = open_bundle(path)
    m = bundle.manifest
    info = {k: m["model"].get(k) for k in ("name", "source", "task")}
    size = (m["artifact"].get("size_bytes") or 0) / 1e6 or None
    row: dict[str, Any] = {"target": m["target"], "precision": str(bundle.target.precision),
                           "size_mb": size, "bundle": str(bundle.path)}
    pool, refs = bundle.samples()
    if not pool:
        raise BundleError(f"{bundle.path} stores no sample inputs to benchmark with")
    if m.get("graphs"):  # an encoder-decoder: time generation, not one graph call
        from modelport.bundle.manifest_graphs import bench_graphs

        row.update(bench_graphs(bundle, pool, settings.threads))
        return row, info
    pool = fit_arrays(pool, bundle.inputs)
    static = static_batch(bundle.inputs, None)
    if static is not None:  # a static-shape artifact runs only its own batch size
        settings = BenchSettings(**{**settings.__dict__, "batch_sizes": (static,)})
    reset_peak()  # this bundle's memory, not the largest of the ones before it
    t0 = time.perf_counter()
    try:
        # throughput mode: the runtime compiles for N streams (async infer requests)
        streams = {} if settings.streams is None else {"streams": settings.streams}
        session = bundle.session(threads=settings.threads, **streams)
    except TargetUnavailable as exc:
        row.update(status="unavailable", available=False, reason=str(exc))
        return row, info
    load_s = time.perf_counter() - t0
    if settings.streams is None and getattr(session, "streams", None) is not None:
        # a bundle --optimize throughput chose streams for: timed as it was chosen (async)
        settings = BenchSettings(**{**settings.__dict__, "streams": session.streams})
    with session:
        if refs:
            got = _run_all(session, pool, static)
            task = info.get("task") or "generic"
            row["fidelity"] = fidelity(got, refs, task=task)
            row["fidelity_on"] = "bundle samples"
        result = benchmark(session, pool, settings, label=m["target"], load_s=load_s,
                           progress=progress)
    row.update(status="ok", load_s=load_s, stats=[vars(s).copy() for s in result.stats],
               peak_rss_mb=result.peak_rss_mb, _result=result.to_dict())
    lat = min(settings.batch_sizes)
    thr = max(settings.batch_sizes)
    for s in result.stats:
        if s.batch == lat:
            row.update(p50_ms=s.p50_ms, p90_ms=s.p90_ms, p99_ms=s.p99_ms, latency_batch=lat)
        if s.batch == thr:
            row.update(throughput=s.throughput, throughput_batch=thr)
    return row, info


def _run_all(session, pool: dict[str, np.ndarray], static: int | None) -> dict[str, np.ndarray]:
    """Outputs for every stored sample row, in order (padding the last batch if static)."""
    rows = len(next(iter(pool.values())))
    batch = static or min(rows, 32)
    chunks: dict[str, list[np.ndarray]] = {}
    for start in range(0, rows, batch):
        index = np.arange(start, start + batch) % rows if static else np.arange(
            start, min(start + batch, rows))
        out = session.infer({k: np.ascontiguousarray(v[index]) for k, v in pool.items()})
        for k, v in out.items():
            chunks.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v)[:rows] for k, v in chunks.items()}
