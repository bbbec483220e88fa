"""Weight + activation INT8 of builtin:tiny-lm (ONNX Runtime's dynamic INT8, NNCF's static INT8
calibrated on prefill feeds): within the default perplexity budget (2%), smaller than FP32,
and the bundles generate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import modelport

pytestmark = [pytest.mark.onnxruntime, pytest.mark.openvino]


def _model_bytes(bundle: Path) -> int:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return sum((bundle / f).stat().st_size for f in manifest["files"] if f.startswith("model."))


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_w8a8_int8_lm_within_the_perplexity_budget(tiny_lm_export, runtime):
    _, result, error = tiny_lm_export
    assert error is None
    target = f"{runtime}:cpu:int8"
    bundle = result.bundles[target]
    manifest = json.loads((bundle / "manifest.json").read_text())
    metrics = manifest["accuracy"]["metrics"]
    assert manifest["accuracy"]["passed"], target
    assert metrics["max_perplexity_increase"] == 0.02
    assert metrics["perplexity"] <= metrics["reference_perplexity"] * 1.02
    assert _model_bytes(bundle) < 0.75 * _model_bytes(result.bundles[f"{runtime}:cpu:fp32"])
    with modelport.load(bundle) as session:
        out = session.generate(np.array([[5, 6, 7]], np.int64), max_new_tokens=6)
    assert out[0, :3].tolist() == [5, 6, 7] and 3 < out.shape[1] <= 9
