"""A tiny random-init CNN with depthwise convolutions and two deliberately sensitive layers.

``make()`` is a ``file.py:factory`` (tests/backends/test_fallback.py exports it). Three
convolutions (two pointwise, one depthwise) read a tensor in which one channel is 100x larger
than the others (its producer's weights and bias scaled up 100x, undone by the reader's
weights, so the float function is unchanged): a per-tensor int8 scale fitted to that channel
leaves the other channels a handful of levels, and the output breaks unless the layers around
that tensor stay float (OpenVINO quantizes a depthwise input per channel, so there only the
two pointwise readers break). The output is a feature map (a backbone), judged by cosine.
"""

from __future__ import annotations

import torch
from torch import nn

SCALE = 100.0


class Block(nn.Module):
    """pointwise -> ReLU -> depthwise 3x3 -> ReLU6 -> pointwise."""

    def __init__(self, cin: int, mid: int, cout: int) -> None:
        super().__init__()
        self.expand = nn.Conv2d(cin, mid, 1)
        self.depthwise = nn.Conv2d(mid, mid, 3, padding=1, groups=mid)
        self.project = nn.Conv2d(mid, cout, 1)

    def forward(self, x):
        x = torch.relu(self.expand(x))
        x = torch.clamp(self.depthwise(x), 0.0, 6.0)
        return self.project(x)


class SensitiveCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.block1 = Block(8, 16, 12)
        self.block2 = Block(12, 24, 16)
        self.block3 = Block(16, 24, 16)
        self.head = nn.Conv2d(16, 16, 1)

    def forward(self, image):
        x = torch.relu(self.stem(image))
        x = self.block1(x)
        x = self.block2(x)
        x = x + self.block3(x)
        return self.head(x)


def _widen(producer: nn.Conv2d, consumer: nn.Conv2d, channel: int) -> None:
    """Output channel ``channel`` of ``producer`` 100x larger, undone where ``consumer`` reads
    it (its filter of that channel for a depthwise conv, its input column otherwise)."""
    with torch.no_grad():
        producer.weight[channel] *= SCALE
        producer.bias[channel] *= SCALE
        if consumer.groups > 1:
            consumer.weight[channel] /= SCALE
        else:
            consumer.weight[:, channel] /= SCALE


def _init(model: nn.Module) -> None:
    """He-normal weights, zero biases: the signal keeps its scale through the layers (with
    PyTorch's default init it fades into the biases, and any cosine looks perfect)."""
    for conv in model.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)


def make():
    torch.manual_seed(0)
    model = SensitiveCNN().eval()
    _init(model)
    _widen(model.stem, model.block1.expand, 2)  # read per-tensor by a pointwise conv
    _widen(model.block1.expand, model.block1.depthwise, 3)  # by a depthwise conv
    _widen(model.block1.project, model.block2.expand, 5)  # by a pointwise conv, after no ReLU
    return model, {"image": torch.randn(2, 3, 16, 16)}
