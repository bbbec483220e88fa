"""The numpy post-processing of the vision tasks, against torch and against brute force: box
decoding, NMS, the letterbox inverse, the F1 matching, the bilinear mask resize, mean IoU."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.tasks.boxes import (
    Raw,
    cxcywh_to_xyxy,
    dense_detections,
    f1_score,
    iou_matrix,
    nms,
    set_detections,
    to_pixels,
)
from modelport.tasks.letterbox import letterbox, letterbox_geometry
from modelport.tasks.masks import class_mask, class_shares, mean_iou


def _random_boxes(rng, n):
    xy = rng.uniform(0, 50, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(5, 30, (n, 2))], axis=1)


def test_nms_keeps_what_brute_force_keeps():
    rng = np.random.default_rng(0)
    for _ in range(20):
        boxes, scores = _random_boxes(rng, 30), rng.uniform(0, 1, 30)
        keep = []
        for i in np.argsort(-scores, kind="stable"):  # the definition, one box at a time
            if all(iou_matrix(boxes[i : i + 1], boxes[j : j + 1])[0, 0] <= 0.5 for j in keep):
                keep.append(int(i))
        assert nms(boxes, scores, 0.5).tolist() == keep


def test_dense_head_nms_is_per_class_and_boxes_are_normalized():
    # two anchors on the same box: different classes both survive, the same class does not
    head = np.zeros((1, 4 + 2, 3), np.float32)
    head[0, :4] = np.array([[32, 32, 32], [16, 16, 48], [20, 20, 10], [10, 10, 10]])
    head[0, 4:, 0] = [0.9, 0.1]
    head[0, 4:, 1] = [0.2, 0.8]
    head[0, 4:, 2] = [0.6, 0.0]  # overlaps anchor 0 (IoU 1), same class: suppressed
    head[0, :4, 2] = head[0, :4, 0]
    (raw,) = dense_detections(head, {"nms_iou": 0.7}, 0.25, (64, 64))
    assert raw.labels.tolist() == [0, 1] and raw.scores.tolist() == pytest.approx([0.9, 0.8])
    np.testing.assert_allclose(raw.boxes[0], [22 / 64, 11 / 64, 42 / 64, 21 / 64])


def test_set_heads_score_as_transformers_processors_do():
    import torch

    rng = np.random.default_rng(1)
    logits = rng.standard_normal((2, 5, 4)).astype(np.float32)
    boxes = rng.uniform(0.2, 0.6, (2, 5, 4)).astype(np.float32)
    softmax = set_detections(logits, boxes, {"score": "softmax"}, 0.2)
    probs = torch.softmax(torch.from_numpy(logits), -1)[..., :-1]
    scores, labels = probs.max(-1)
    for raw, s, lab in zip(softmax, scores, labels, strict=True):
        keep = (s > 0.2).numpy()
        np.testing.assert_allclose(raw.scores, s.numpy()[keep], atol=1e-6)
        assert raw.labels.tolist() == lab.numpy()[keep].tolist()
    sigmoid = set_detections(logits, boxes, {"score": "sigmoid", "top_k": 6}, 0.0)
    flat = torch.sigmoid(torch.from_numpy(logits)).flatten(1)
    top, index = flat.topk(6, dim=-1)
    for i, raw in enumerate(sigmoid):
        np.testing.assert_allclose(raw.scores, top[i].numpy(), atol=1e-6)
        assert raw.labels.tolist() == (index[i] % 4).tolist()
        np.testing.assert_allclose(raw.boxes, cxcywh_to_xyxy(boxes[i][index[i] // 4]))


def test_letterbox_inverse_maps_boxes_back_to_the_original_pixels():
    from PIL import Image

    h0, w0, size = 45, 90, (64, 64)
    gain, left, top, new_w, new_h = letterbox_geometry(h0, w0, *size)
    assert (new_w, new_h, left, top) == (64, 32, 0, 16)
    canvas = np.asarray(letterbox(Image.new("RGB", (w0, h0), (255, 0, 0)),
                                  {"size": list(size)}))
    assert (canvas[:top] == 114).all() and (canvas[top + new_h :] == 114).all()
    assert (canvas[top + 1 : top + new_h - 1, :, 0] == 255).all()
    original = np.array([10.0, 5.0, 40.0, 30.0])  # x0 y0 x1 y1 in the 90 x 45 image
    in_input = (original * gain + [left, top, left, top]) / [64, 64, 64, 64]
    (det,) = to_pixels(Raw(np.array([0.9]), np.array([1]), in_input[None]), (h0, w0),
                       {"letterbox": True, "size": list(size)}, {"1": "dog"})
    assert det.label == "dog"
    np.testing.assert_allclose(det.box, original, atol=1e-9)
    (plain,) = to_pixels(Raw(np.array([0.9]), np.array([0]), np.array([[0.1, 0.2, 0.5, 1.0]])),
                         (h0, w0), {"size": list(size)}, None)
    np.testing.assert_allclose(plain.box, [9.0, 9.0, 45.0, 45.0])


def test_f1_matches_one_to_one_with_the_same_label_at_iou_half():
    box = np.array([[0.0, 0.0, 1.0, 1.0]])
    ref = Raw(np.array([0.9, 0.8]), np.array([0, 1]), np.array([[0, 0, 1, 1], [2, 2, 3, 3.0]]))
    same = f1_score([ref], [ref])
    assert same["detection_f1"] == 1.0
    shifted = Raw(np.array([0.9]), np.array([0]), box + [0.4, 0, 0.4, 0])  # IoU 0.43
    assert f1_score([shifted], [ref])["detection_f1"] == 0.0
    relabeled = Raw(np.array([0.9, 0.8]), np.array([1, 1]), ref.boxes)
    assert f1_score([relabeled], [ref])["detection_f1"] == pytest.approx(0.5)
    twice = Raw(np.array([0.9, 0.85]), np.array([0, 0]), np.concatenate([box, box]))
    assert f1_score([twice], [Raw(np.array([0.9]), np.array([0]), box)])["detection_f1"] == \
        pytest.approx(2 / 3)  # one match, three detections in all
    nothing = Raw(np.zeros(0), np.zeros(0, np.int64), np.zeros((0, 4)))
    assert f1_score([nothing], [nothing])["detection_f1"] == 1.0


@pytest.mark.parametrize(("src", "dst"), [((16, 16), (37, 53)), ((8, 10), (8, 10)),
                                          ((20, 15), (7, 9)), ((4, 4), (300, 2))])
def test_mask_resize_is_torchs_bilinear_argmax(src, dst):
    import torch

    logits = np.random.default_rng(2).standard_normal((5, *src)).astype(np.float32)
    up = torch.nn.functional.interpolate(torch.from_numpy(logits)[None], size=dst,
                                         mode="bilinear", align_corners=False)[0]
    assert (class_mask(logits, dst) == up.argmax(0).numpy()).mean() >= 0.999


def test_class_shares_and_mean_iou():
    mask = np.array([[0, 0, 1], [2, 2, 2]])
    shares = class_shares(mask, {"0": "road", "2": "sky"})
    assert [(s.label, s.share) for s in shares] == [("sky", 0.5), ("road", pytest.approx(1 / 3)),
                                                     ("LABEL_1", pytest.approx(1 / 6))]
    other = np.array([[0, 0, 0], [2, 2, 2]])
    # class 0: 2/3, class 1: 0/1, class 2: 3/3
    assert mean_iou(mask[None], other[None]) == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert mean_iou(mask[None], mask[None]) == 1.0
