"""modelport: take a trained PyTorch model to a deployable, measured artifact.

Lean on purpose: importing modelport imports no torch and no runtime (a test guards this);
the verbs below import what they need when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelport._version import SCHEMA_VERSION, __version__
from modelport.errors import ModelportError

if TYPE_CHECKING:
    from modelport.backends.base import Session
    from modelport.bench.harness import BenchResult
    from modelport.export_steps import ExportResult

__all__ = ["SCHEMA_VERSION", "ModelportError", "__version__", "benchmark", "export", "load", "verify"]


def export(model: Any, targets: Any, **kwargs: Any) -> ExportResult:
    """Export ``model`` to each target, check fidelity, benchmark, write one bundle per target.

    See :func:`modelport.export_steps.export` for the keyword arguments.
    """
    from modelport.export_steps import export as _export

    if isinstance(targets, str):
        targets = [targets]
    return _export(model, targets, **kwargs)


def load(bundle: Any, *, threads: int | None = None, verify: bool = True, **options: Any) -> Session:
    """Open a bundle (checksums verified) and return a Session for its runtime. No torch needed."""
    from modelport.bundle import open_bundle

    return open_bundle(bundle, verify=verify).session(threads=threads, **options)


def verify(bundle: Any, **kwargs: Any) -> dict[str, Any]:
    """Checksums, schema, and the stored samples re-run against their reference outputs."""
    from modelport.bundle.verify import verify_bundle

    return verify_bundle(bundle, **kwargs)


def benchmark(session: Session, inputs: Any = None, **settings: Any) -> BenchResult:
    """Time a session with the common harness. ``inputs``: name -> array of sample rows
    (defaults to the samples stored in the session's bundle)."""
    from modelport.bench.harness import BenchSettings
    from modelport.bench.harness import benchmark as _benchmark

    if inputs is None:
        bundle = getattr(session, "bundle", None)
        if bundle is None:
            raise ModelportError("give inputs= (a dict of input name -> array of sample rows)")
        inputs, _ = bundle.samples()
    progress = settings.pop("progress", False)
    label = settings.pop("label", "")
    if "batch_sizes" in settings:
        settings["batch_sizes"] = tuple(settings["batch_sizes"])
    return _benchmark(session, inputs, BenchSettings(**settings), label=label, progress=progress)
