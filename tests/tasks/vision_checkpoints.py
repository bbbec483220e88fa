"""Tiny random-init detection and semantic-segmentation folders, written with save_pretrained
as a user's training script would, each with its own image processor (64 x 64 inputs).

Random init gives near-uniform class scores, so each head's weights are spread (larger) to make
labels and scores differ between queries and pixels, as a trained model's do."""

from __future__ import annotations

from pathlib import Path

SIZE = 64
DET_LABELS = ["cat", "dog", "car"]
SEG_LABELS = ["road", "sky", "tree", "person"]


def _labels(names: list[str]) -> dict:
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


def _spread(model, scales: dict[str, float]) -> None:
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            for word, scale in scales.items():
                if word in name and p.ndim >= 2:
                    p.normal_(0, scale)


#: queries that differ, boxes off the center, scores from near 0 to near 1
DETECTOR = {"class_labels_classifier": 2.0, "bbox_predictor": 0.1,
            "query_position_embeddings": 1.0}
#: YOLOS: distinct detection tokens; its 3-layer class MLP kept at unit gain but the last layer
YOLOS = {"detection_tokens": 1.0, "class_labels_classifier": 0.3,
         "class_labels_classifier.layers.2": 1.0, "bbox_predictor.layers.2": 0.1}


def detr(path: Path) -> Path:
    """DetrForObjectDetection with a transformers ResNet backbone (no timm)."""
    import torch
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                            layer_type="basic", out_features=["stage2"])
    config = DetrConfig(use_timm_backbone=False, use_pretrained_backbone=False,
                        backbone_config=backbone, d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=16,
                        decoder_ffn_dim=16, num_queries=8, **_labels(DET_LABELS))
    torch.manual_seed(0)
    model = DetrForObjectDetection(config).eval()
    _spread(model, DETECTOR)
    model.save_pretrained(path)
    DetrImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(path)
    return path


def yolos(path: Path) -> Path:
    """YolosForObjectDetection (a ViT with detection tokens)."""
    import torch
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    config = YolosConfig(image_size=[SIZE, SIZE], patch_size=16, hidden_size=16,
                         num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                         num_detection_tokens=8, **_labels(DET_LABELS))
    torch.manual_seed(1)
    model = YolosForObjectDetection(config).eval()
    _spread(model, YOLOS)
    model.save_pretrained(path)
    YolosImageProcessor(size={"height": SIZE, "width": SIZE}, image_mean=[0.5, 0.4, 0.3],
                        image_std=[0.2, 0.25, 0.3]).save_pretrained(path)
    return path


def segformer(path: Path) -> Path:
    """SegformerForSemanticSegmentation: logits at a quarter of the input size."""
    import torch
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    config = SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
                             hidden_sizes=[8, 16], num_attention_heads=[1, 2], patch_sizes=[7, 3],
                             strides=[4, 2], mlp_ratios=[2, 2], decoder_hidden_size=16,
                             **_labels(SEG_LABELS))
    torch.manual_seed(2)
    model = SegformerForSemanticSegmentation(config).eval()
    _spread(model, {"decode_head.classifier": 1.0})
    model.save_pretrained(path)
    SegformerImageProcessor(size={"height": SIZE, "width": SIZE}).save_pretrained(path)
    return path


def upernet(path: Path) -> Path:
    """UperNetForSemanticSegmentation on a transformers ConvNeXt backbone: logits at the input
    size."""
    import torch
    from transformers import (
        ConvNextConfig,
        SegformerImageProcessor,
        UperNetConfig,
        UperNetForSemanticSegmentation,
    )

    backbone = ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1],
                              out_features=["stage1", "stage2"])
    config = UperNetConfig(backbone_config=backbone, hidden_size=16, use_auxiliary_head=False,
                           pool_scales=[1, 2], **_labels(SEG_LABELS))
    torch.manual_seed(3)
    model = UperNetForSemanticSegmentation(config).eval()
    _spread(model, {"decode_head.classifier": 1.0})
    model.save_pretrained(path)
    SegformerImageProcessor(size={"height": SIZE, "width": SIZE}, image_mean=[0.5, 0.5, 0.5],
                            image_std=[0.25, 0.25, 0.25]).save_pretrained(path)
    return path


def write_scenes(folder: Path, n: int, *, size: tuple[int, int] = (50, 70),
                 seed: int = 0) -> Path:
    """PNG 'scenes': a color gradient with a few solid shapes and a little noise, so masks
    and boxes are regions, not per-pixel noise (what photos give a real model)."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    height, width = size
    for i in range(n):
        y, x = np.mgrid[0:height, 0:width] / max(height, width)
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        base = a + (b - a) * ((x + y) / 2)[..., None]
        image = Image.fromarray(base.astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x0, y0 = rng.integers(0, width - 10), rng.integers(0, height - 10)
            box = [int(x0), int(y0), int(x0 + rng.integers(8, width // 2)),
                   int(y0 + rng.integers(8, height // 2))]
            color = tuple(int(c) for c in rng.integers(0, 255, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=color)
        pixels = np.asarray(image, dtype=np.int16) + rng.integers(-8, 8, (height, width, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder
