"""builtin:digits-cnn — a small CNN trained in seconds on scikit-learn's bundled 8x8 digits.

Seeded and cached (weights only, read back with ``torch.load(weights_only=True)``).
Split: 60% train, 40% held out; the held-out part is split again into calibration and
evaluation, so INT8 is never judged on the data it was calibrated on.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

from modelport.models.prepared import PreparedModel
from modelport.specs import TensorSpec

log = logging.getLogger("modelport")

SEED = 0
EPOCHS = 40
VERSION = "v2"  # bump when the architecture or training changes, to invalidate caches


def cache_dir() -> Path:
    from modelport.io import cache_root

    return cache_root()


def dataset() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    return images, digits.target.astype(np.int64)


def splits() -> dict[str, np.ndarray]:
    """Index arrays for train / held-out, fixed by SEED."""
    n = len(dataset()[1])
    order = np.random.default_rng(SEED).permutation(n)
    cut = int(0.6 * n)
    return {"train": order[:cut], "heldout": order[cut:]}


def build_module():
    import torch
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
            )
            self.classifier = nn.Linear(64, 10)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.features(image).flatten(1))

    return DigitsCNN()


def trained_module():
    """Train once (seconds), then reuse the cached weights."""
    import torch

    path = cache_dir() / f"digits-cnn-{VERSION}-seed{SEED}-e{EPOCHS}.pt"
    torch.manual_seed(SEED)  # before building: the initial weights come from this generator
    model = build_module()
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, weights_only=True))
            return model.eval()
        except Exception:  # noqa: BLE001 - a corrupt cache is rebuilt, never trusted
            log.warning("digits-cnn cache %s is unreadable; retraining", path)
    images, labels = dataset()
    train = splits()["train"]
    x, y = torch.from_numpy(images[train]), torch.from_numpy(labels[train])
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    from tqdm import tqdm

    model.train()
    # one thread: multi-threaded CPU reductions change the low bits run to run, and every
    # INT8 number downstream would then depend on which weights this run happened to get
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in tqdm(range(EPOCHS), desc="training digits-cnn", unit="epoch", leave=False):
            for batch in torch.randperm(len(x), generator=generator).split(64):
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return model


INPUTS = [TensorSpec("image", "float32", ("batch", 1, 8, 8))]


def load() -> PreparedModel:
    from modelport.calibration_data import CalibrationSet

    images, labels = dataset()
    heldout = splits()["heldout"]

    def make_inputs(batch: int) -> dict:
        start = (batch * 53) % (len(images) - batch)
        return {"image": np.ascontiguousarray(images[start : start + batch])}

    def default_data():
        held = CalibrationSet(
            [{"image": images[i : i + 1]} for i in heldout],
            labels=labels[heldout],
            source="scikit-learn digits (held-out 40%)",
        )
        return held.split(0.5)

    digest = hashlib.sha256(images.tobytes()).hexdigest()[:12]
    return PreparedModel(
        name="digits-cnn",
        source="builtin:digits-cnn (trained on scikit-learn digits)",
        task="classification",
        inputs=INPUTS,
        output_names=["logits"],
        example_inputs={"image": images[:2]},
        module=trained_module(),
        make_inputs=make_inputs,
        default_data=default_data,
        metadata={"dataset": "sklearn.datasets.load_digits", "dataset_sha256_12": digest},
    )
