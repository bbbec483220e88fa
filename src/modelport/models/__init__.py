"""Model sources: built-ins, ``file.py:factory``, ``.pt2``, ``.onnx`` and compressed-model
folders, each turned into a PreparedModel (``models/resolve.py`` dispatches)."""

from __future__ import annotations

from pathlib import Path

from modelport.models.prepared import PreparedModel, tile_inputs

__all__ = ["PreparedModel", "resolve_model", "tile_inputs"]


def resolve_model(spec: str | Path) -> PreparedModel:
    """Turn a MODEL argument into a PreparedModel (see ``modelport export --help``)."""
    from modelport.models.resolve import resolve

    return resolve(str(spec))
