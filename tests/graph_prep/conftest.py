"""The widened-range CNNs, exported once per test session through the project's exporter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent


def _export(factory: str, tmp_path_factory) -> Path:
    from modelport.exporters import export_validated
    from modelport.models import resolve_model

    model = resolve_model(f"{HERE / 'widened_cnn.py'}:{factory}")
    path = tmp_path_factory.mktemp(f"widened-{factory}") / "model.onnx"
    export_validated(model, path)
    return path


@pytest.fixture(scope="session")
def relu_cnn(tmp_path_factory) -> Path:
    return _export("make", tmp_path_factory)


@pytest.fixture(scope="session")
def relu6_cnn(tmp_path_factory) -> Path:
    return _export("make_relu6", tmp_path_factory)


def images(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(n)]


@pytest.fixture(scope="session")
def calib_samples() -> list[dict[str, np.ndarray]]:
    return images(64, seed=0)


@pytest.fixture(scope="session")
def held_out() -> list[dict[str, np.ndarray]]:
    return images(48, seed=1)
