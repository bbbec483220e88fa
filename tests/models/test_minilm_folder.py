"""The real all-MiniLM-L6-v2 sentence-transformers folder, exported as a user's folder."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.onnxruntime


@pytest.fixture(scope="session")
def minilm_folder_bundles(minilm_folder, tmp_path_factory):
    import modelport

    out = tmp_path_factory.mktemp("minilm-folder")
    return modelport.export(str(minilm_folder), ["onnxruntime:cpu:fp32", "onnxruntime:cpu:int8"],
                            out=out, bench=None, progress=False)


def test_fp32_bundle_equals_sentence_transformer_encode(minilm_folder, minilm_folder_bundles):
    st = pytest.importorskip("sentence_transformers")
    import modelport
    from modelport.models.data import sentences

    texts = sentences()[:16] + ["A much longer sentence " * 80]  # past 256 tokens: truncated
    want = st.SentenceTransformer(str(minilm_folder), device="cpu").encode(texts)
    session = modelport.load(minilm_folder_bundles.bundles["onnxruntime:cpu:fp32"])
    with session:
        feeds = session.bundle.tokenizer().encode(texts, session.inputs)
        got = session.infer(feeds)["sentence_embedding"]
    assert feeds["input_ids"].shape[1] == 256
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_int8_bundle_within_budget_on_the_shipped_sentences(minilm_folder_bundles):
    import modelport

    manifest = modelport.load(minilm_folder_bundles.bundles["onnxruntime:cpu:int8"]).bundle.manifest
    accuracy = manifest["accuracy"]
    assert accuracy["passed"] and accuracy["metrics"]["cosine_mean"] >= 0.99
    assert manifest["calibration"]["source"].startswith("builtin sentences")
    assert manifest["preprocessing"]["sentence_transformers"]["pooling"] == ["mean"]
    assert manifest["model"]["metadata"]["hf_task"] == "feature-extraction"


def test_run_text_on_the_folder_bundle(minilm_folder_bundles):
    proc = run_cli("run", str(minilm_folder_bundles.bundles["onnxruntime:cpu:int8"]),
                   "--text", "a sentence")
    assert proc.returncode == 0, proc.stderr
    assert "sentence_embedding: float32[1, 384]" in proc.stdout
