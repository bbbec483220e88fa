"""Natural-photo crops for experiments/cnn_int8.py, without a network: the photos that
scikit-learn, scikit-image and matplotlib ship in their wheels.

Calibration crops come from one set of photos, evaluation crops from other photos (held apart:
no photo, and no view of the same scene, is on both sides). Each crop is a random square of
30-100% of the photo's short side at a random position, flipped half the time, resized to
224x224 (bilinear) and normalized with the model's mean/std; fixed seeds, so every run sees the
same pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: (package, file) — sklearn's and matplotlib's photos plus scikit-image's data folder
CALIB_PHOTOS = (("sklearn", "china.jpg"), ("sklearn", "flower.jpg"),
                ("skimage", "astronaut.png"), ("skimage", "rocket.jpg"),
                ("skimage", "motorcycle_left.png"), ("skimage", "motorcycle_right.png"),
                ("skimage", "grass.png"), ("skimage", "brick.png"))
EVAL_PHOTOS = (("skimage", "chelsea.png"), ("skimage", "coffee.png"),
               ("matplotlib", "grace_hopper.jpg"), ("skimage", "camera.png"),
               ("skimage", "hubble_deep_field.jpg"), ("skimage", "gravel.png"))


def photo_path(package: str, name: str) -> Path:
    """The file inside the installed package (found without importing the package)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not installed: .venv/bin/pip install -r "
                         "experiments/requirements-cnn.txt -c constraints.txt")
    root = Path(next(iter(spec.submodule_search_locations)))
    sub = {"sklearn": "datasets/images", "skimage": "data",
           "matplotlib": "mpl-data/sample_data"}[package]
    return root / sub / name


def crops(photos, count: int, *, seed: int, size: int = 224, mean=(0.485, 0.456, 0.406),
          std=(0.229, 0.224, 0.225)) -> np.ndarray:
    """``count`` crops, spread evenly over ``photos``: float32 [count, 3, size, size]."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = [Image.open(photo_path(*p)).convert("RGB") for p in photos]
    out = np.empty((count, 3, size, size), np.float32)
    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]
    for i in range(count):
        im = images[i % len(images)]
        w, h = im.size
        side = int(min(w, h) * rng.uniform(0.3, 1.0))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = im.crop((x, y, x + side, y + side)).resize((size, size), Image.BILINEAR)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        pixels = np.asarray(crop, np.float32).transpose(2, 0, 1) / 255.0
        out[i] = (pixels - m) / s
    return out


def write_splits(folder: Path, calib: int, evaluate: int, *, mean, std) -> tuple[Path, Path]:
    """calib.npy and eval.npy in ``folder`` (each one [N, 3, 224, 224] float32 array)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "calib.npy", folder / "eval.npy"
    np.save(paths[0], crops(CALIB_PHOTOS, calib, seed=0, mean=mean, std=std))
    np.save(paths[1], crops(EVAL_PHOTOS, evaluate, seed=1, mean=mean, std=std))
    return paths
