"""Rotary embedding inside GroupQueryAttention (lm_rotary.py) and packed QKV (lm_qkv.py):
tiny random-init checkpoints of several rope variants, built as ORT builds them (fused,
rewritten), generate what transformers generates token for token, alone and as a left-padded
batch; the rewrite is in the build facts, or declined with its reason."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tests.lm.checkpoints import ROPE_ARCHS, write_checkpoint

pytestmark = [pytest.mark.onnxruntime]

PROMPTS = [[5, 17, 42, 9], [3, 100, 7, 8, 60, 11, 12]]
NEW = 12


@pytest.fixture(scope="module", params=ROPE_ARCHS)
def built(request, tmp_path_factory):
    """(checkpoint folder, PreparedModel, fp32 Artifact, graph path) of one rope variant."""
    from modelport.backends.onnxruntime.lm_graph import build_lm
    from modelport.backends.onnxruntime.options import OnnxRuntimeOptions
    from modelport.exporters.kv_cache import export_kv_onnx
    from modelport.models import resolve_model
    from modelport.specs import Precision

    root = tmp_path_factory.mktemp(f"rope-{request.param}")
    folder = write_checkpoint(request.param, root / "ckpt")
    model = resolve_model(folder)
    raw = root / "raw.onnx"
    export_kv_onnx(model, raw)
    work = root / "fp32"
    work.mkdir()
    artifact = build_lm(raw, work, Precision.FP32, OnnxRuntimeOptions(),
                        model.preprocessing["context_length"])
    return request.param, folder, model, artifact, raw


def _session(artifact):
    """The LMSession modelport.load would make of the build (its runtime settings applied)."""
    from modelport.backends.lm_session import LMSession
    from modelport.backends.onnxruntime.backend import OnnxRuntimeSession
    from modelport.exporters.onnx_io import read_io_specs

    path = artifact.workdir / artifact.main
    inputs, outputs = read_io_specs(path)
    settings = artifact.info["runtime_settings"]
    inner = OnnxRuntimeSession(path, inputs, outputs, spinning=settings.get("spinning"),
                               kv_buffer=settings.get("kv_buffer"))
    return LMSession(inner, eos_token_id=[], context_length=64)


def _transformers(folder, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    model.generation_config.eos_token_id = None  # exactly NEW tokens, as eos_token_id=[]
    out = model.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                         max_new_tokens=NEW, do_sample=False, pad_token_id=0)
    return out.numpy()


def test_rotary_rewrite_generates_what_transformers_generates(built, tmp_path):
    kind, folder, _, artifact, _ = built
    attention = artifact.info["lm_fusions"]["attention"]
    rotary = attention["rotary"]
    assert attention["rewritten"] == 2  # every layer one GroupQueryAttention either way
    if kind == "stablelm-rot8":
        assert not rotary["applied"] and "not multiples of 16" in rotary["reason"]
    else:
        assert rotary["applied"] and rotary["qkv_packed"] == rotary["pairs_packed"] == 2
        assert rotary["positions"] == 64 and rotary["check"]["max_relative_error"] < 1e-4
        assert rotary["rotary_dim"] == 16  # the whole 16-wide head, or half of a 32-wide one
    import onnx

    ops = Counter(n.op_type for n in onnx.load(str(artifact.workdir / artifact.main)).graph.node)
    assert ops["GroupQueryAttention"] == 2 and ops["Softmax"] == 0
    if rotary["applied"]:  # no exported rope left: no Cos / Sin subgraph, no head transposes
        assert ops["Cos"] == ops["Sin"] == ops["Transpose"] == 0
        # weight_only packs each concatenated weight as one MatMulNBits: per layer qkv, o,
        # gate+up and down (Phi: qkv+fc1, which read the same input, dense and fc2), and the
        # LM head
        from modelport.backends.onnxruntime.options import OnnxRuntimeOptions
        from modelport.backends.onnxruntime.weight_only import quantize_weight_only
        from modelport.specs import Precision

        info = quantize_weight_only(artifact.workdir / artifact.main, tmp_path / "int4.onnx",
                                    Precision.INT4, OnnxRuntimeOptions())
        assert info["matmuls_packed"] == 2 * (3 if kind == "phi" else 4) + 1
    short, long = PROMPTS
    pad = len(long) - len(short)
    batch = np.array([[0] * pad + short, long], np.int64)
    mask = np.array([[0] * pad + [1] * len(short), [1] * len(long)], np.int64)
    session = _session(artifact)
    for prompt in PROMPTS:
        ids = np.array([prompt], np.int64)
        want = _transformers(folder, ids, np.ones_like(ids))
        np.testing.assert_array_equal(session.generate(ids, NEW), want)
    assert session.kv_buffer_used
    want = _transformers(folder, batch, mask)
    np.testing.assert_array_equal(session.generate(batch, NEW, attention_mask=mask), want)
