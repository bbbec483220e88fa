"""``--task`` for a ``file.py:factory``: the factory's model is a detector or a segmenter, so its
bundle carries that task's pre/post-processing and its INT8 is judged by the task's metric.

- ``--task object-detection --detection-head yolo``: one image input [batch, 3, H, W] and a
  dense head [batch, 4 + classes, anchors] (cx, cy, w, h in input pixels, then per-class
  scores: ultralytics' layout); the bundle decodes the boxes and runs NMS
  (``modelport.tasks.boxes``).
- ``--task image-segmentation``: one image input and logits [batch, classes, h, w].

The factory may declare its preprocessing as an attribute of the factory function::

    def build():
        ...
        return model, torch.zeros(1, 3, 320, 320)
    build.preprocessing = {"image": {"letterbox": True, "rescale_factor": 1 / 255},
                           "labels": ["person", "car"], "detection": {"threshold": 0.25}}

``image`` takes ``size`` [H, W] (default: the example input's), ``letterbox`` (default True
for a YOLO head: keep the aspect ratio, pad with gray), ``rescale_factor`` (default 1/255),
``mean``/``std`` (default none), ``resample``; ``labels`` (a list) or ``id2label`` names the
classes; ``detection`` takes ``threshold`` (default 0.25, ultralytics'), ``nms_iou`` (0.7) and
``max_det`` (300).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelport.errors import ModelLoadError
from modelport.models.prepared import PreparedModel

#: task -> the detection heads it takes from a factory (None: no --detection-head)
FACTORY_TASKS: dict[str, tuple[str, ...]] = {"object-detection": ("yolo",),
                                             "image-segmentation": ()}
YOLO_THRESHOLD = 0.25  # ultralytics' predict conf default
IMAGE_KEYS = ("size", "letterbox", "rescale_factor", "mean", "std", "resample", "pad_value")
DETECTION_KEYS = ("threshold", "nms_iou", "max_det")


def declare_task(prepared: PreparedModel, task: str, *, detection_head: str | None,
                 declared: Any, where: str) -> PreparedModel:
    """``prepared`` (a factory's model) as a ``task`` model, or a one-line ModelLoadError."""
    if task not in FACTORY_TASKS:
        raise ModelLoadError(
            f"--task {task} applies to Hugging Face checkpoint folders; a file.py:factory takes "
            "--task object-detection --detection-head yolo or --task image-segmentation"
        )
    heads = FACTORY_TASKS[task]
    if heads and detection_head not in heads:
        raise ModelLoadError(f"'{where}': --task {task} from a factory needs --detection-head "
                             f"({', '.join(heads)}): the layout of the model's output")
    if not heads and detection_head is not None:
        raise ModelLoadError("--detection-head goes with --task object-detection")
    if declared is not None and not isinstance(declared, Mapping):
        raise ModelLoadError(f"'{where}': the factory's .preprocessing must be a dict, got "
                             f"{type(declared).__name__}")
    declared = dict(declared or {})
    unknown = sorted(set(declared) - {"image", "labels", "id2label", "detection"})
    if unknown:
        raise ModelLoadError(f"'{where}': unknown preprocessing key(s) {unknown}; it takes "
                             "image, labels (or id2label) and detection")
    spec = _image_input(prepared, where)
    outputs = _outputs(prepared, where)
    height, width = int(spec.shape[2]), int(spec.shape[3])
    image = _keys(declared.get("image"), IMAGE_KEYS, "image", where)
    params: dict[str, Any] = {"size": [height, width], "rescale_factor": 1 / 255,
                              "resample": 2, "letterbox": task == "object-detection"}
    params.update(image)
    params["size"] = [int(v) for v in params["size"]]
    if params["size"] != [height, width]:
        raise ModelLoadError(f"'{where}': preprocessing image size {params['size']} is not the "
                             f"model input's {[height, width]}")
    params["height"], params["width"] = height, width
    classes = _classes(prepared, task, outputs)
    pre: dict[str, Any] = {"task": task, "image": params,
                           "id2label": _id2label(declared, classes, where)}
    if task == "object-detection":
        det = _keys(declared.get("detection"), DETECTION_KEYS, "detection", where)
        pre["detection"] = {"head": detection_head, "output": outputs[0],
                            "threshold": YOLO_THRESHOLD, "nms_iou": 0.7, "max_det": 300, **det}
    else:
        pre["segmentation"] = {"output": outputs[0]}
    prepared.preprocessing = {**prepared.preprocessing, **pre}
    from modelport.tasks import FIDELITY_KIND

    prepared.task = FIDELITY_KIND[task]
    prepared.task_from = "declared"
    prepared.metadata = {**prepared.metadata, "task": task, "task_declared_by": "--task"}
    return prepared


def _image_input(prepared: PreparedModel, where: str) -> Any:
    if len(prepared.inputs) != 1 or len(prepared.inputs[0].shape) != 4 or \
            prepared.inputs[0].shape[1] != 3:
        raise ModelLoadError(f"'{where}': a detector or segmenter takes one image input "
                             "[batch, 3, H, W]; this model takes "
                             f"{[list(s.shape) for s in prepared.inputs]}")
    spec = prepared.inputs[0]
    if not all(isinstance(d, int) for d in spec.shape[2:]):
        raise ModelLoadError(f"'{where}': the image input needs a fixed height and width")
    return spec


def _outputs(prepared: PreparedModel, where: str) -> list[str]:
    if not prepared.output_names:
        raise ModelLoadError(f"'{where}': the model has no output")
    return list(prepared.output_names)


def _classes(prepared: PreparedModel, task: str, outputs: list[str]) -> int:
    """The class count read from the first output on the example inputs."""
    import torch

    with torch.no_grad():
        out = prepared.module(**{k: torch.from_numpy(v)
                                 for k, v in prepared.example_inputs.items()})
    first = out if isinstance(out, torch.Tensor) else (
        out[outputs[0]] if isinstance(out, dict) else out[0])
    if first.ndim != (3 if task == "object-detection" else 4):
        layout = ("[batch, 4 + classes, anchors]" if task == "object-detection"
                  else "[batch, classes, h, w]")
        raise ModelLoadError(f"{task} expects the first output as {layout}; the model gives "
                             f"{list(first.shape)}")
    classes = int(first.shape[1]) - (4 if task == "object-detection" else 0)
    if classes < 1:
        raise ModelLoadError(f"a YOLO head's output is [batch, 4 + classes, anchors]; "
                             f"this one has {first.shape[1]} rows")
    return classes


def _id2label(declared: dict[str, Any], classes: int, where: str) -> dict[str, str]:
    if "labels" in declared:
        names = [str(n) for n in declared["labels"]]
        id2label = {str(i): n for i, n in enumerate(names)}
    elif "id2label" in declared:
        id2label = {str(k): str(v) for k, v in dict(declared["id2label"]).items()}
    else:
        return {str(i): f"LABEL_{i}" for i in range(classes)}
    if len(id2label) != classes:
        raise ModelLoadError(f"'{where}': {len(id2label)} label(s) declared for a model with "
                             f"{classes} classes")
    return id2label


def _keys(value: Any, allowed: tuple[str, ...], what: str, where: str) -> dict[str, Any]:
    value = dict(value or {})
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ModelLoadError(f"'{where}': unknown {what} preprocessing key(s) {unknown}; it "
                             f"takes {', '.join(allowed)}")
    return value
