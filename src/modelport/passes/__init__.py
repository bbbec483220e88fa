"""Compression passes on torch.nn.Module: pruning, layer drop, low-rank, distillation, QAT.

Each pass returns a module with the same inputs and outputs, and a PassReport of what it
changed, measured the same way for all (see base.py). ``compress()`` runs a recipe and writes
a compressed-model directory that ``modelport export`` accepts like any model.
"""

from __future__ import annotations

from typing import Any

__all__ = ["compress", "run_pipeline"]


def compress(model: Any, recipe: Any, **kwargs: Any) -> Any:
    """Run ``recipe`` on ``model`` and write the compressed-model directory (see pipeline.py)."""
    from modelport.passes.compress_steps import compress as _compress

    return _compress(model, recipe, **kwargs)


def run_pipeline(model: Any, recipe: Any, **kwargs: Any) -> Any:
    """Run ``recipe`` on ``model`` in memory; returns a CompressResult."""
    from modelport.passes.compress_steps import run_pipeline as _run

    return _run(model, recipe, **kwargs)
