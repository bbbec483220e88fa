"""What runs on a device node: the probe and the benchmark of one packed bundle.

A device needs only ``modelport[ray,<runtime>]``: nothing here imports torch (a test checks
``sys.modules``). Fidelity is checked here, on the device, against the reference outputs stored
in the bundle at build time (``modelport.bench.device``), with ``bench BUNDLE``'s harness.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path
from typing import Any

from modelport.sweep.outcomes import BenchOutcome, BundleBlob
from modelport.sweep.payload import sha256

#: extra name -> the module whose presence means it is installed
EXTRAS = {"export": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino",
          "litert": "ai_edge_litert", "tensorrt": "tensorrt", "ray": "ray", "plot": "matplotlib"}


def probe(targets: list[str]) -> dict[str, Any]:
    """Versions, extras, fingerprint and which targets can run on this node (and why not)."""
    from modelport import registry
    from modelport._version import SCHEMA_VERSION, __version__
    from modelport.bench.fingerprint import fingerprint
    from modelport.specs import Target

    runnable = {}
    for text in targets:
        target = Target.parse(text)
        avail = registry.get_backend(target.runtime).availability(target)
        runnable[text] = None if avail.ok else avail.reason
    return {"modelport": __version__, "schema_version": SCHEMA_VERSION,
            "extras": sorted(e for e, mod in EXTRAS.items() if _has(mod)),
            "fingerprint": fingerprint(), "unavailable": runnable, "node_id": node_id()}


def bench_blob(device: str, blob: BundleBlob, settings: dict[str, Any]) -> BenchOutcome:
    """Check the blob's sha256, unpack it and time it like ``modelport bench BUNDLE``."""
    from modelport.bench.device import bench_bundles
    from modelport.bench.fingerprint import fingerprint
    from modelport.bench.harness import BenchSettings
    from modelport.errors import BundleError

    if sha256(blob.data) != blob.sha256:
        raise BundleError(f"{blob.file_name} arrived on {device} with a different sha256 "
                          "than it was packed with: refused")
    work = Path(tempfile.mkdtemp(prefix="modelport-sweep-bench-"))
    try:
        archive = work / blob.file_name
        archive.write_bytes(blob.data)
        report = bench_bundles([archive], BenchSettings(**settings), label=device,
                               progress=False)
        row = {k: v for k, v in report["rows"][0].items() if k != "bundle"}
        return BenchOutcome(device, row, node_id(), fingerprint(), report["model"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def node_id() -> str | None:
    """The Ray node this runs on (None outside Ray); Ray is already imported in a Ray worker."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
