"""TensorRT engines and torch CUDA on a real NVIDIA GPU (skipped with the reason elsewhere).

Engine build FP32/FP16/INT8 from real bundles, parity with torch CUDA, dynamic-shape profiles,
engine cache reuse and rebuild on a mismatched record, and the torch:cuda:* baseline rows.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import modelport
from modelport.backends.tensorrt.backend import TensorRTBackend
from modelport.backends.tensorrt.engine import ENGINES_DIR
from modelport.bundle import open_bundle
from modelport.errors import InputError
from modelport.metrics import fidelity

pytestmark = [pytest.mark.gpu, pytest.mark.tensorrt]


@pytest.fixture(scope="module")
def gpu_bundles(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-bundles")
    targets = ["tensorrt:cuda:fp32", "tensorrt:cuda:fp16", "tensorrt:cuda:int8",
               "torch:cuda:fp32"]
    return modelport.export("builtin:digits-cnn", targets, out=out, bench=None, progress=False)


@pytest.fixture(scope="module")
def minilm_int8(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-minilm")
    return modelport.export("builtin:minilm", ["tensorrt:cuda:int8", "tensorrt:cuda:fp16"],
                            out=out, bench=None, progress=False)


def _fidelity_vs_stored(bundle_path):
    with modelport.load(bundle_path) as session:
        feeds, refs = session.bundle.samples()
        got = session.infer(feeds)
    task = session.bundle.manifest["model"]["task"]
    return fidelity(got, refs, task="generic" if task == "classification" else task)


@pytest.mark.parametrize("precision, min_cosine", [("fp32", 0.99999), ("fp16", 0.9999),
                                                   ("int8", 0.99)])
def test_engine_builds_and_matches_the_reference(gpu_bundles, precision, min_cosine):
    path = gpu_bundles.bundles[f"tensorrt:cuda:{precision}"]
    # the pipeline ran the engine itself on this machine (not the ONNX Runtime proxy)
    row = next(r for r in gpu_bundles.rows if r["target"] == f"tensorrt:cuda:{precision}")
    assert row["status"] == "ok" and "fidelity_by" not in row
    assert _fidelity_vs_stored(path)["cosine_mean"] >= min_cosine


def test_int8_minilm_keeps_the_budget_on_the_gpu(minilm_int8):
    for target, floor in (("tensorrt:cuda:int8", 0.99), ("tensorrt:cuda:fp16", 0.999)):
        assert _fidelity_vs_stored(minilm_int8.bundles[target])["cosine_mean"] >= floor


def test_parity_with_torch_cuda(gpu_bundles, digits):
    from modelport.backends.torch.cuda_session import TorchCudaSession

    feeds = digits.fresh_inputs(16)
    torch_session = TorchCudaSession(digits.module, digits.inputs,
                                     digits.onnx_artifact.outputs, precision="fp32")
    with torch_session, modelport.load(gpu_bundles.bundles["tensorrt:cuda:fp32"]) as trt_session:
        want = torch_session.infer(feeds)["logits"]
        got = trt_session.infer(feeds)["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def test_dynamic_shapes_within_the_profile_and_a_named_error_outside(minilm_int8, minilm):
    path = minilm_int8.bundles["tensorrt:cuda:fp16"]
    with modelport.load(path) as session:
        for batch in (1, 7, 32):
            feeds = minilm.fresh_inputs(batch)
            assert session.infer(feeds)["sentence_embedding"].shape == (batch, 384)
        long = {k: np.zeros((1, 300), np.int64) for k in ("input_ids", "attention_mask")}
        with pytest.raises(InputError, match="outside the engine's optimization profile"):
            session.infer(long)


def test_engine_cache_reused_then_rebuilt_on_mismatch(gpu_bundles):
    path = gpu_bundles.bundles["tensorrt:cuda:int8"]
    bundle = open_bundle(path)
    backend = TensorRTBackend()
    first = backend.build_on_device(bundle)
    second = backend.build_on_device(bundle)
    assert second["built_now"] is False and second["engine_sha256"] == first["engine_sha256"]
    records = list((path / ENGINES_DIR).glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    record["tensorrt_version"] = "0.0.0"  # as if another TensorRT had built it
    records[0].write_text(json.dumps(record))
    third = backend.build_on_device(bundle)
    assert third["built_now"] is True
    open_bundle(path)  # the engines/ folder never breaks the bundle's checksums


@pytest.mark.parametrize("precision, min_cosine", [("fp16", 0.999), ("bf16", 0.99)])
def test_torch_cuda_rows(digits, precision, min_cosine):
    from modelport.backends.torch.cuda_session import TorchCudaSession

    feeds = digits.fresh_inputs(32)
    outputs = digits.onnx_artifact.outputs
    with TorchCudaSession(digits.module, digits.inputs, outputs) as fp32, \
            TorchCudaSession(digits.module, digits.inputs, outputs, precision=precision) as low:
        want, got = fp32.infer(feeds), low.infer(feeds)
        low.synchronize()
    assert fidelity(got, want, task="generic")["cosine_mean"] >= min_cosine
    assert next(digits.module.parameters()).device.type == "cpu"  # the reference is untouched
