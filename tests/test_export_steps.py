"""Export + validation of both built-ins, and user model sources (file.py:factory, .pt2, .onnx)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import modelport
from modelport.errors import ModelLoadError


@pytest.mark.parametrize("fixture", ["digits", "minilm"])
def test_builtin_exports_and_matches_torch_at_two_batch_sizes(fixture, request):
    model = request.getfixturevalue(fixture)
    validation = model.onnx_artifact.validation
    assert set(validation["batches"]) == {"1", "3"}
    # fp32 export: the graph is the same math; 1e-4 leaves room only for reordered sums
    assert validation["max_abs_err"] < 1e-4
    for batch in validation["batches"].values():
        for report in batch.values():
            assert report["allclose"]
            assert report["cosine_min"] > 0.99999


def test_minilm_graph_has_dynamic_batch_and_sequence(minilm):
    specs = {s.name: s for s in minilm.onnx_artifact.inputs}
    assert set(specs) == {"input_ids", "attention_mask"}
    for spec in specs.values():
        assert spec.dtype == "int64"
        assert all(isinstance(d, str) for d in spec.shape)  # both axes dynamic
    (out,) = minilm.onnx_artifact.outputs
    assert out.name == "sentence_embedding" and out.shape[1] == 384


def test_minilm_embeddings_are_unit_norm_and_meaningful(minilm):
    from modelport.calibration_data.text import TextTokenizer
    from modelport.exporters.validate import torch_outputs

    tok = TextTokenizer(minilm.tokenizer_json)
    feeds = tok.encode(["A man is playing a guitar.", "Someone plays the guitar.",
                        "The stock market fell sharply today."], minilm.input_specs)
    emb = torch_outputs(minilm, feeds)["sentence_embedding"]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # paraphrases are closer to each other than to an unrelated sentence
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3


FACTORY = """
import torch
from torch import nn

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 4))

    def forward(self, features):
        return self.net(features)

def make():
    torch.manual_seed(0)
    return Tiny().eval(), {"features": torch.randn(2, 12)}
"""


@pytest.fixture(scope="module")
def factory_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "tiny.py"
    path.write_text(textwrap.dedent(FACTORY))
    return path


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    """A folder of .npz feed files, one batch of 16 rows per file."""
    folder = tmp_path_factory.mktemp("calib")
    rng = np.random.default_rng(0)
    for i in range(10):
        np.savez(folder / f"feed{i:02d}.npz", features=rng.standard_normal((16, 12)).astype(np.float32))
    return folder


def test_factory_model_exports_fp32_and_int8_with_npz_calibration(factory_file, calib_dir, tmp_path):
    result = modelport.export(f"{factory_file}:make", ["onnxruntime:cpu:fp32", "onnxruntime:cpu:int8"],
                              out=tmp_path, calib=calib_dir, bench=None, progress=False,
                              allow_accuracy_drop=True)
    assert set(result.bundles) == {"onnxruntime:cpu:fp32", "onnxruntime:cpu:int8"}
    fp32 = next(r for r in result.rows if r["target"] == "onnxruntime:cpu:fp32")
    assert fp32["fidelity"]["max_abs_err"] < 1e-4
    int8 = next(r for r in result.rows if r["target"] == "onnxruntime:cpu:int8")
    assert int8["fidelity"]["cosine_mean"] > 0.95  # a random MLP, ~100 calibration rows
    manifest = modelport.load(result.bundles["onnxruntime:cpu:int8"]).bundle.manifest
    # --calib alone is split by content hash: every one of the 160 rows on exactly one side
    assert manifest["calibration"]["samples"] + manifest["evaluation"]["samples"] == 160
    assert manifest["calibration"]["samples"] > manifest["evaluation"]["samples"] > 0
    assert manifest["model"]["source"].endswith("tiny.py:make")


def test_pt2_and_onnx_sources_export(factory_file, tmp_path):
    import torch

    from modelport.models.resolve import load_factory

    model = load_factory(factory_file, "make")
    example = torch.from_numpy(model.example_inputs["features"])
    batch = torch.export.Dim("batch")
    program = torch.export.export(model.module, (), {"features": example},
                                  dynamic_shapes={"features": {0: batch}})
    pt2 = tmp_path / "tiny.pt2"
    torch.export.save(program, str(pt2))
    result = modelport.export(str(pt2), ["onnxruntime:cpu:fp32"], out=tmp_path / "from-pt2",
                              bench=None, progress=False)
    row = result.rows[1]
    assert row["fidelity"]["max_abs_err"] < 1e-4

    onnx_path = tmp_path / "from-pt2" / "onnxruntime-cpu-fp32" / "model.onnx"
    result = modelport.export(str(onnx_path), ["onnxruntime:cpu:fp32"], out=tmp_path / "from-onnx",
                              bench=None, progress=False)
    assert result.rows[0]["target"].startswith("onnxruntime:cpu:fp32 (given ONNX)")
    assert result.rows[1]["fidelity"]["max_abs_err"] == 0.0


def test_factory_errors_are_named(tmp_path):
    from modelport.models.resolve import load_factory

    bad = tmp_path / "bad.py"
    bad.write_text("def make():\n    return 42\n\ndef boom():\n    raise RuntimeError('no weights')\n")
    with pytest.raises(ModelLoadError, match=r"must return \(nn.Module, example_inputs\)"):
        load_factory(bad, "make")
    with pytest.raises(ModelLoadError, match="raised RuntimeError: no weights"):
        load_factory(bad, "boom")
    with pytest.raises(ModelLoadError, match="has no function 'nope'"):
        load_factory(bad, "nope")
