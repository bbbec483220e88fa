"""A small MobileNet-style CNN (depthwise convs, BatchNorm, ReLU or ReLU6) whose per-channel
ranges are widened so naive INT8 suffers: every fourth channel of each block's output is
scaled by 100 (through its BatchNorm, or its conv when it has none) and the next conv's
weights reading that channel by 1/100. With ReLU the float function is unchanged; per-tensor
activations and per-channel weights of the next layer then waste their levels. Used as a
``file.py:factory`` (``make``, ``make_relu6``) and from Python."""

from __future__ import annotations

import itertools

import torch
from torch import nn

WIDEN = 100.0


class Net(nn.Module):
    def __init__(self, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), act(),
            nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), act(),
            nn.Conv2d(16, 24, 1), act(),
            nn.Conv2d(24, 24, 3, padding=1, groups=24), nn.BatchNorm2d(24), act(),
            nn.Conv2d(24, 32, 1, bias=False), nn.BatchNorm2d(32), act(),
        )
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((2, 3)))


def widen(model: Net) -> Net:
    g = torch.Generator().manual_seed(1)
    layers = list(model.body)
    with torch.no_grad():
        for mod in layers:
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5, generator=g)
                mod.running_var.uniform_(0.5, 2.0, generator=g)
                mod.weight.uniform_(0.5, 2.0, generator=g)
                mod.bias.uniform_(-0.2, 0.5, generator=g)
        convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
        for i, j in itertools.pairwise(convs):
            conv, nxt = layers[i], layers[j]
            idx = torch.arange(0, conv.out_channels, 4)
            scaled = layers[i + 1] if isinstance(layers[i + 1], nn.BatchNorm2d) else conv
            scaled.weight[idx] *= WIDEN
            if scaled.bias is not None:
                scaled.bias[idx] *= WIDEN
            if nxt.groups == 1:
                nxt.weight[:, idx] /= WIDEN
            else:
                nxt.weight[idx] /= WIDEN
    return model


def make(act: type[nn.Module] = nn.ReLU):
    torch.manual_seed(0)
    return widen(Net(act)).eval(), torch.randn(1, 3, 16, 16)


def make_relu6():
    return make(nn.ReLU6)
