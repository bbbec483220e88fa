"""Detector outputs -> boxes with labels and scores (numpy only: runs on a device).

Two head layouts, named in the manifest's ``preprocessing.detection.head``:

- ``set`` (DETR, YOLOS, RT-DETR and the other DETR variants): ``logits`` [batch, queries,
  classes] and ``pred_boxes`` [batch, queries, 4] as (cx, cy, w, h) in [0, 1] of the graph's
  input. Scores as transformers' image processors compute them: ``softmax`` over the classes
  with the last one "no object" dropped (DETR, YOLOS), or ``sigmoid`` per (query, class) pair,
  the ``top_k`` best kept (RT-DETR, Deformable/Conditional DETR). No NMS (a set predictor).
- ``yolo`` (ultralytics' layout): one output [batch, 4 + classes, anchors] of (cx, cy, w, h)
  in the graph input's pixels and per-class scores; each anchor keeps its best class, then
  per-class NMS (greedy, IoU ``nms_iou``) keeps at most ``max_det`` boxes.

Boxes come back as (x0, y0, x1, y1) in [0, 1] of the graph's input; ``to_pixels`` maps them to
the original image (undoing a letterbox when the preprocessing used one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.tasks.base import as_points
from modelport.tasks.postprocess import label_name

DEFAULT_THRESHOLD = 0.5
DEFAULT_NMS_IOU = 0.7  # ultralytics' predict default
DEFAULT_MAX_DET = 300
MATCH_IOU = 0.5  # a detection matches the reference's when IoU >= this and the label agrees


@dataclass(frozen=True)
class Detection:
    label: str
    label_id: int
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "label_id": self.label_id, "score": self.score,
                "box": [float(v) for v in self.box]}


@dataclass(frozen=True)
class Raw:
    """One image's detections before labels and pixels: scores, class ids, normalized xyxy."""

    scores: np.ndarray  # [n] float64
    labels: np.ndarray  # [n] int64
    boxes: np.ndarray  # [n, 4] float64, x0 y0 x1 y1 in [0, 1] of the graph input


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    cx, cy, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def set_detections(logits: np.ndarray, pred_boxes: np.ndarray, det: Mapping[str, Any],
                   threshold: float) -> list[Raw]:
    """Per image of a DETR-style set head (see the module docstring)."""
    out = []
    xyxy_all = cxcywh_to_xyxy(pred_boxes)
    for row, xyxy in zip(np.asarray(logits), xyxy_all, strict=True):
        if det.get("score") == "sigmoid":
            probs = 1.0 / (1.0 + np.exp(-np.asarray(row, dtype=np.float64)))
            flat = probs.reshape(-1)
            k = min(int(det.get("top_k") or flat.size), flat.size)
            order = np.argsort(-flat, kind="stable")[:k]
            scores, classes = flat[order], order % probs.shape[1]
            boxes = xyxy[order // probs.shape[1]]
        else:
            probs = _softmax(row)[:, :-1]
            classes, scores, boxes = probs.argmax(-1), probs.max(-1), xyxy
        keep = scores > threshold
        out.append(Raw(scores[keep], classes[keep].astype(np.int64), boxes[keep]))
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` [n, 4] with every box of ``b`` [m, 4] (xyxy)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-300), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS: indices kept, best score first (ties keep the earlier box)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        overlaps = iou_matrix(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][overlaps <= iou]
    return np.asarray(keep, dtype=np.int64)


def dense_detections(head: np.ndarray, det: Mapping[str, Any], threshold: float,
                     input_hw: Sequence[int]) -> list[Raw]:
    """Per image of a YOLO-style dense head [batch, 4 + classes, anchors] (input pixels)."""
    height, width = (float(v) for v in input_hw)
    iou = float(det.get("nms_iou", DEFAULT_NMS_IOU))
    max_det = int(det.get("max_det", DEFAULT_MAX_DET))
    scale = np.array([width, height, width, height])
    out = []
    for image in np.asarray(head, dtype=np.float64):
        rows = image.T  # [anchors, 4 + classes]
        cls = rows[:, 4:]
        classes, scores = cls.argmax(-1), cls.max(-1)
        keep = scores > threshold
        boxes = cxcywh_to_xyxy(rows[keep, :4]) / scale
        scores, classes = scores[keep], classes[keep]
        # per-class NMS in one pass: shift each class's boxes apart (ultralytics' offset trick)
        shifted = boxes + classes[:, None] * 4.0
        picked = nms(shifted, scores, iou)[:max_det]
        out.append(Raw(scores[picked], classes[picked].astype(np.int64), boxes[picked]))
    return out


def raw_detections(outputs: Mapping[str, np.ndarray], det: Mapping[str, Any],
                   threshold: float, input_hw: Sequence[int]) -> list[Raw]:
    """The graph's outputs -> per-image detections, as the manifest's head says."""
    if det.get("head") == "yolo":
        name = det.get("output") or next(iter(outputs))
        return dense_detections(outputs[name], det, threshold, input_hw)
    return set_detections(outputs[det.get("logits", "logits")],
                          outputs[det.get("boxes", "pred_boxes")], det, threshold)


def to_pixels(raw: Raw, original_hw: Sequence[int], image: Mapping[str, Any],
              id2label: Mapping[str, str] | None) -> list[Detection]:
    """Normalized boxes of the graph input -> (x0, y0, x1, y1) in the original image's pixels."""
    h0, w0 = (float(v) for v in original_hw)
    boxes = np.asarray(raw.boxes, dtype=np.float64).reshape(-1, 4)
    if image.get("letterbox"):
        from modelport.tasks.letterbox import letterbox_geometry

        height, width = (int(v) for v in image["size"])
        gain, left, top, _, _ = letterbox_geometry(int(h0), int(w0), height, width)
        px = boxes * np.array([width, height, width, height])
        px = (px - np.array([left, top, left, top])) / gain
        boxes = np.clip(px, 0, [w0, h0, w0, h0])
    else:
        boxes = boxes * np.array([w0, h0, w0, h0])
    return [Detection(label_name(id2label, int(c)), int(c), float(s),
                      tuple(float(v) for v in box))  # type: ignore[arg-type]
            for s, c, box in zip(raw.scores, raw.labels, boxes, strict=True)]


def match_counts(got: Raw, ref: Raw, iou: float = MATCH_IOU) -> tuple[int, int, int]:
    """(matched, candidate count, reference count): greedy one-to-one matching, best
    candidate score first, to the unmatched reference box of the same label with the
    highest IoU >= ``iou``."""
    if not len(got.scores) or not len(ref.scores):
        return 0, len(got.scores), len(ref.scores)
    overlaps = iou_matrix(got.boxes, ref.boxes)
    overlaps[got.labels[:, None] != ref.labels[None, :]] = -1.0
    taken = np.zeros(len(ref.scores), dtype=bool)
    matched = 0
    for i in np.argsort(-got.scores, kind="stable"):
        row = np.where(taken, -1.0, overlaps[i])
        j = int(row.argmax())
        if row[j] >= iou:
            taken[j] = True
            matched += 1
    return matched, len(got.scores), len(ref.scores)


def f1_score(got: Sequence[Raw], ref: Sequence[Raw], iou: float = MATCH_IOU) -> dict[str, float]:
    """F1 of the candidate's detections against the reference's over a set of images (1.0
    when neither detects anything: they agree)."""
    matched = n_got = n_ref = 0
    for g, r in zip(got, ref, strict=True):
        m, a, b = match_counts(g, r, iou)
        matched, n_got, n_ref = matched + m, n_got + a, n_ref + b
    f1 = 1.0 if n_got + n_ref == 0 else 2.0 * matched / (n_got + n_ref)
    return {"detection_f1": f1, "detections": float(n_got), "reference_detections": float(n_ref)}


def detection_metric(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                     feeds: Any, pre: Mapping[str, Any]) -> dict[str, float]:
    """F1 of the candidate's detections vs the reference's (same label, IoU >= 0.5) at the
    bundle's default threshold, as accuracy points."""
    det = pre.get("detection")
    if not det:  # a caller that passed no preprocessing: judged by the generic metrics alone
        return {}
    threshold = float(det.get("threshold", DEFAULT_THRESHOLD))
    hw = (pre.get("image") or {}).get("size") or (1, 1)
    metrics = f1_score(raw_detections(outputs, det, threshold, hw),
                       raw_detections(reference, det, threshold, hw))
    f1 = metrics["detection_f1"]
    return as_points(f1, **metrics)
