"""A YOLO-style detector built here, as a user's file.py:factory: a small conv backbone and a
dense head [batch, 4 + classes, anchors] in ultralytics' layout (cx, cy, w, h in input pixels,
then sigmoid class scores). Built here because ultralytics needs torchvision, whose wheels on
the index do not import with this CPU torch (docs/tasks.md, "Object detection")."""

from __future__ import annotations

import torch

SIZE = 64
STRIDE = 8
LABELS = ["person", "bicycle", "car"]


class TinyYolo(torch.nn.Module):
    def __init__(self, classes: int = len(LABELS)) -> None:
        super().__init__()
        self.backbone = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.SiLU(),
            torch.nn.Conv2d(8, 16, 3, 2, 1), torch.nn.SiLU(),
            torch.nn.Conv2d(16, 16, 3, 2, 1), torch.nn.SiLU())
        self.box = torch.nn.Conv2d(16, 4, 1)
        self.cls = torch.nn.Conv2d(16, classes, 1)
        cells = SIZE // STRIDE
        y, x = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
        self.register_buffer("grid", torch.stack([x, y]).float().unsqueeze(0) + 0.5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        raw = self.box(features)
        xy = (self.grid + torch.tanh(raw[:, :2])) * STRIDE
        wh = torch.exp(raw[:, 2:].clamp(-2, 2)) * 4 * STRIDE
        boxes = torch.cat([xy, wh], 1).flatten(2)
        scores = torch.sigmoid(self.cls(features)).flatten(2)
        return torch.cat([boxes, scores], 1)


def build():
    torch.manual_seed(0)
    model = TinyYolo().eval()
    with torch.no_grad():  # spread weights: features and scores like a trained model's range
        for conv in model.backbone:
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.normal_(0, 0.2)
                conv.bias.normal_(0, 0.2)
        model.cls.weight.normal_(0, 1.0)
        model.cls.bias.fill_(-3.0)
    return model, torch.rand(1, 3, SIZE, SIZE)


build.preprocessing = {"image": {"letterbox": True}, "labels": LABELS,
                       "detection": {"threshold": 0.3, "nms_iou": 0.5}}


def plain():
    """The same model without declared preprocessing (defaults: letterbox, 1/255, LABEL_i)."""
    return build()
