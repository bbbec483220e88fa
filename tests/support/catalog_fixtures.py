"""Fixtures shared by the error catalog test modules (loaded with ``pytest_plugins``).

Module scope: each test module builds its own tiny model and bundle (about a second each).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.catalog_support import FP32, write_mlp_factory, write_tiny_onnx


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("catalog-inputs")


@pytest.fixture(scope="module")
def tiny_onnx(files) -> Path:
    return write_tiny_onnx(files / "tiny.onnx")


@pytest.fixture(scope="module")
def mlp(files) -> Path:
    return write_mlp_factory(files / "user_mlp.py")


@pytest.fixture(scope="module")
def mlp_onnx(mlp, files) -> Path:
    """The same MLP (``mlp:make``) exported to ONNX once: a CLI child given this file skips
    importing torch and the dynamo export (about 2 s instead of 20 on a loaded 2-core box)."""
    from modelport.exporters import export_onnx
    from modelport.models import resolve_model

    return export_onnx(resolve_model(f"{mlp}:make"), files / "user_mlp.onnx").path


@pytest.fixture(scope="module")
def tiny_bundle(tiny_onnx, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny-bundles")
    result = _export(str(tiny_onnx), [FP32], out=out, bench=None, progress=False)
    return result.bundles[FP32]


@pytest.fixture(scope="module")
def mlp_bundle(mlp, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mlp-bundles")
    result = _export(f"{mlp}:make", [FP32], out=out, bench=None, progress=False)
    return result.bundles[FP32]


def _export(*args, **kwargs):
    import modelport

    return modelport.export(*args, **kwargs)
