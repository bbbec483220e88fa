"""A loaded detector or semantic segmenter -> PreparedModel: its named outputs, how its scores
are made (read from the model and its image processor, not from a list of models), synthetic
pixels for export validation and no built-in data (INT8 needs ``--calib`` with images)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.models.prepared import PreparedModel

if TYPE_CHECKING:
    from modelport.models.hf.describe import FolderPlan


def score_rule(plan: FolderPlan, logits_shape: tuple[int, ...]) -> dict[str, Any]:
    """How a set detector's logits become scores, as its own image processor does it: one
    class more than its labels is DETR's "no object" (softmax, that class dropped); else
    a sigmoid per (query, class), the processor's ``top_k`` best kept (every query's
    classes when it has none)."""
    labels = len(plan.preprocessing.get("id2label") or {})
    queries, classes = int(logits_shape[1]), int(logits_shape[2])
    if classes == labels + 1:
        return {"score": "softmax"}
    top_k = _processor_default(plan, "top_k")
    return {"score": "sigmoid", "top_k": int(top_k) if isinstance(top_k, int) else queries}


def _processor_default(plan: FolderPlan, name: str) -> Any:
    """A default argument of the folder's image processor's post_process_object_detection."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(str(plan.folder.path),
                                                       local_files_only=True)
        params = inspect.signature(processor.post_process_object_detection).parameters
    except Exception:  # noqa: BLE001 - no processor, or one without detection post-processing
        return None
    param = params.get(name)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def vision_model(plan: FolderPlan, common: dict[str, Any],
                 synthetic_pixels: Callable[..., dict[str, np.ndarray]]) -> PreparedModel:
    """``synthetic_pixels(plan, batch, seed=...)``: export-check inputs (no data is built in)."""
    import torch

    names = [plan.output.name, *[s.name for s in plan.extra_outputs]]
    common = {**common, "output_names": names}
    example = synthetic_pixels(plan, 2, seed=0)
    pre = common["preprocessing"]
    if "detection" in pre:
        with torch.no_grad():
            logits = common["module"](torch.from_numpy(example["pixel_values"]))[0]
        pre["detection"] = {**pre["detection"], **score_rule(plan, tuple(logits.shape))}
    return PreparedModel(example_inputs=example,
                         make_inputs=lambda batch: synthetic_pixels(plan, batch, seed=batch),
                         **common)

