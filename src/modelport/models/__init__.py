"""Model sources: built-ins, ``file.py:factory``, ``.pt2``, ``.onnx`` and compressed-model
folders, each turned into a PreparedModel (``models/resolve.py`` dispatches)."""

from __future__ import annotations

from pathlib import Path

from modelport.models.prepared import PreparedModel, tile_inputs

__all__ = ["PreparedModel", "resolve_model", "tile_inputs"]


def resolve_model(
    spec: str | Path, *, task: str | None = None, trust_pickle: bool = False,
    detection_head: str | None = None,
) -> PreparedModel:
    """Turn a MODEL argument into a PreparedModel (see ``modelport export --help``).

    ``task`` (feature-extraction, text-classification, ...) and ``trust_pickle`` (allow a
    ``.bin`` pickle checkpoint) apply to Hugging Face checkpoint folders; ``task``
    object-detection (with ``detection_head="yolo"``) or image-segmentation also to a
    ``file.py:factory`` (``models.factory_task``).
    """
    from modelport.models.resolve import resolve

    return resolve(str(spec), task=task, trust_pickle=trust_pickle,
                   detection_head=detection_head)
