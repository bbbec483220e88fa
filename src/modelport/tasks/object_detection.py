"""object-detection: images -> boxes (x0, y0, x1, y1 in the original image's pixels), labels
and scores above ``--threshold`` (the bundle's default when not given). A DETR-style set head
or a YOLO-style dense head with NMS: ``modelport.tasks.boxes``. Fidelity: F1 of the
detections against the torch reference's (same label, IoU >= 0.5) at the default threshold."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.errors import UsageError
from modelport.tasks.base import Answer, RunInputs, Task, preprocessing
from modelport.tasks.boxes import (
    DEFAULT_THRESHOLD,
    Detection,
    detection_metric,
    raw_detections,
    to_pixels,
)


@dataclass
class Detections(Answer):
    task: str
    inputs: list[str]
    sizes: list[tuple[int, int]]
    detections: list[list[Detection]]
    threshold: float
    outputs: dict[str, np.ndarray] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = []
        for source, (h, w), found in zip(self.inputs, self.sizes, self.detections, strict=True):
            out.append(f"{source} ({w}x{h}): {len(found)} detection(s) with score > "
                       f"{self.threshold:g}")
            width = max((len(d.label) for d in found), default=0)
            for d in found:
                x0, y0, x1, y1 = d.box
                out.append(f"  {d.label:<{width}}  {d.score:.4f}  "
                           f"({x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f})")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "threshold": self.threshold,
                "predictions": [{"input": s, "height": h, "width": w,
                                 "detections": [d.to_dict() for d in found]}
                                for s, (h, w), found in zip(self.inputs, self.sizes,
                                                            self.detections, strict=True)],
                "outputs": {k: np.asarray(v).tolist() for k, v in self.outputs.items()}}


def threshold_of(bundle: Any, given: RunInputs) -> float:
    det = preprocessing(bundle).get("detection") or {}
    value = given.threshold if given.threshold is not None else \
        det.get("threshold", DEFAULT_THRESHOLD)
    return float(value)


class ObjectDetection(Task):
    name = "object-detection"
    fidelity = "object-detection"
    inputs = ("image",)
    options = ("threshold",)
    metric_name = "detection_f1"
    metric = staticmethod(detection_metric)

    def check_more(self, bundle: Any, given: RunInputs) -> None:
        if given.threshold is not None and not 0.0 <= given.threshold < 1.0:
            raise UsageError(f"--threshold is a score in [0, 1), got {given.threshold:g}")
        if not preprocessing(bundle).get("detection"):
            raise UsageError(f"{bundle.path} has no detection post-processing in its manifest: "
                             "use --input FEEDS.npz")

    def encode(self, bundle: Any, given: RunInputs) -> tuple[dict[str, np.ndarray], Any]:
        from modelport.tasks.vision_input import image_batch

        feeds, sizes, names = image_batch(bundle, given.image or [])
        return feeds, (sizes, names)

    def decode(self, bundle: Any, outputs: dict[str, np.ndarray], given: RunInputs,
               state: Any) -> Answer:
        sizes, names = state
        pre = preprocessing(bundle)
        threshold = threshold_of(bundle, given)
        image = pre.get("image") or {}
        raw = raw_detections(outputs, pre["detection"], threshold, image.get("size") or (1, 1))
        found = [to_pixels(r, hw, image, pre.get("id2label"))
                 for r, hw in zip(raw[: len(sizes)], sizes, strict=True)]
        return Detections(self.name, names, sizes, found, threshold, outputs)
