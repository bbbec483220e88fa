"""torch FP32 on a device that has torch: the row every speedup of that device is relative to.

Runs only where the probe found the ``export`` extra. The model comes as a payload (a built-in
name, the user's files, or a recipe's compressed folder); inputs and reference outputs are
those stored in one of the build's bundles, so the torch row is timed on the same samples.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from modelport.sweep.outcomes import BenchOutcome, BundleBlob
from modelport.sweep.payload import Payload

TARGET = "torch:cpu:fp32"


def bench_reference(device: str, model: Payload, blob: BundleBlob,
                    settings: dict[str, Any]) -> BenchOutcome:
    from modelport.backends.torch.backend import TorchSession
    from modelport.bench.fingerprint import fingerprint
    from modelport.bench.harness import BenchSettings, benchmark
    from modelport.bundle import open_bundle
    from modelport.metrics import fidelity
    from modelport.models import resolve_model
    from modelport.shapes import fit_arrays
    from modelport.sweep.device_tasks import node_id

    bench = BenchSettings(**settings)
    work = Path(tempfile.mkdtemp(prefix="modelport-sweep-ref-"))
    try:
        prepared = resolve_model(model.materialize(work / "model"))
        if prepared.module is None:
            raise ValueError("the model was given as ONNX: there is no torch reference to run")
        archive = work / blob.file_name
        archive.write_bytes(blob.data)
        bundle = open_bundle(archive)
        pool, refs = bundle.samples()
        pool = fit_arrays(pool, bundle.inputs)
        start = time.perf_counter()
        session = TorchSession(prepared.module, bundle.inputs, bundle.outputs,
                               threads=bench.threads)
        load_s = time.perf_counter() - start
        with session:
            row: dict[str, Any] = {"target": TARGET, "precision": "fp32", "reference": True,
                                   "status": "reference", "load_s": load_s}
            if refs:
                got = _infer_all(session, pool)
                row["fidelity"] = fidelity(got, refs, task=bundle.manifest["model"].get("task")
                                           or "generic")
                row["fidelity_on"] = "bundle samples"
            result = benchmark(session, pool, bench, label=TARGET, load_s=load_s,
                               progress=False)
        row["stats"] = [vars(s).copy() for s in result.stats]
        lat, thr = min(bench.batch_sizes), max(bench.batch_sizes)
        for s in result.stats:
            if s.batch == lat:
                row.update(p50_ms=s.p50_ms, p90_ms=s.p90_ms, p99_ms=s.p99_ms, latency_batch=lat)
            if s.batch == thr:
                row.update(throughput=s.throughput, throughput_batch=thr)
        return BenchOutcome(device, row, node_id(), fingerprint())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _infer_all(session: Any, pool: dict[str, Any], batch: int = 32) -> dict[str, Any]:
    """Outputs for every stored sample, 32 rows at a time (memory stays flat)."""
    import numpy as np

    rows = len(next(iter(pool.values())))
    chunks: dict[str, list[Any]] = {}
    for start in range(0, rows, batch):
        out = session.infer({k: np.ascontiguousarray(v[start:start + batch])
                             for k, v in pool.items()})
        for k, v in out.items():
            chunks.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in chunks.items()}
