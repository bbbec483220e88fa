"""The graph I/O and preprocessing of a detection or semantic-segmentation checkpoint folder
(``modelport inspect`` and export share it through ``describe.plan_folder``).

- object-detection (``*ForObjectDetection``: DETR, YOLOS, RT-DETR, other DETR variants):
  ``pixel_values`` -> ``logits`` [batch, queries, classes] and ``pred_boxes`` [batch, queries,
  4] (cx, cy, w, h in [0, 1]); ``preprocessing.detection`` says how scores are made (filled in
  by ``vision_prepare`` from the loaded model) and the default ``threshold``.
- image-segmentation, semantic (``*ForSemanticSegmentation``: SegFormer, DPT, UperNet, ...):
  ``pixel_values`` -> ``logits`` [batch, labels, h, w], resized to the original image on the
  device (``modelport.tasks.masks``).

The image is resized to the graph's fixed input size, never cropped. A processor that keeps
the aspect ratio (``shortest_edge``/``longest_edge``, DETR's default) is exported at a fixed
square of its shortest edge, with a warning: save the processor with ``size={"height": H,
"width": W}`` to choose the input size.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from modelport.errors import ModelLoadError
from modelport.models.hf.folder import read_json
from modelport.models.hf.image_config import PREPROCESSOR, image_params
from modelport.specs import TensorSpec

if TYPE_CHECKING:
    from modelport.models.hf.adapter import Adapter
    from modelport.models.hf.folder import Folder
    from modelport.models.hf.task import TaskChoice

log = logging.getLogger("modelport")

VISION_TASKS = ("object-detection", "image-segmentation")
DEFAULT_THRESHOLD = 0.5  # transformers' ObjectDetectionPipeline default


def dense_image_params(folder: Folder) -> dict[str, Any]:
    """The folder's resize/rescale/normalize at one fixed input size, without a crop."""
    params = image_params(folder)
    for key in ("crop_size", "shortest_edge"):
        params.pop(key, None)
    raw = read_json(folder.path / PREPROCESSOR) if (folder.path / PREPROCESSOR).is_file() else {}
    size = raw.get("size") if isinstance(raw, dict) else None
    if isinstance(size, dict) and "height" in size and "width" in size:
        height, width = int(size["height"]), int(size["width"])
    elif isinstance(size, int):
        height = width = size
    elif isinstance(size, dict) and "shortest_edge" in size:
        height = width = int(size["shortest_edge"])
        log.warning("'%s': the image processor keeps the aspect ratio (shortest edge %d); the "
                    "bundle takes a fixed %dx%d input instead (the graph has one size): save the "
                    "processor with size={'height': H, 'width': W} to choose it",
                    folder.path, height, height, width)
    else:
        height, width = int(params["height"]), int(params["width"])
    params.update(size=[height, width], height=height, width=width)
    return params


def plan_vision(folder: Folder, choice: TaskChoice, pre: dict[str, Any],
                adapter: Adapter | None) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's (inputs, outputs); fills ``pre`` with the image, label and task entries."""
    if adapter is not None:
        raise ModelLoadError(f"'{adapter.path}': LoRA adapters are merged for text and image "
                             f"classifiers; {choice.task} takes the merged folder")
    config = folder.config
    labels = {str(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    count = len(labels) or int(config.get("num_labels", 2))
    pre["id2label"] = labels or {str(i): f"LABEL_{i}" for i in range(count)}
    params = dense_image_params(folder)
    pre["image"] = params
    height, width = params["size"]
    inputs = [TensorSpec("pixel_values", "float32", ("batch", 3, height, width))]
    if choice.task == "object-detection":
        queries = config.get("num_queries") or config.get("num_detection_tokens") or "queries"
        pre["detection"] = {"head": "set", "logits": "logits", "boxes": "pred_boxes",
                            "threshold": DEFAULT_THRESHOLD}
        outputs = [TensorSpec("logits", "float32", ("batch", queries, "classes")),
                   TensorSpec("pred_boxes", "float32", ("batch", queries, 4))]
    else:
        pre["segmentation"] = {"output": "logits"}
        outputs = [TensorSpec("logits", "float32", ("batch", count, "height", "width"))]
    return inputs, outputs
