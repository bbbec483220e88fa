"""Hugging Face folders, by task, through export: each bundle against transformers' own outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.models.checkpoints import TEXTS, write_images
from tests.models.conftest import FP32_TARGETS

pytestmark = [pytest.mark.onnxruntime, pytest.mark.openvino]

ATOL = 1e-4


def _hf_text_reference(folder, auto: str, texts=TEXTS):
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = getattr(transformers, auto).from_pretrained(folder, local_files_only=True).eval()
    feeds = tok(list(texts), padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**feeds), feeds["attention_mask"].numpy().astype(bool)


def _bundle_text_outputs(bundle_path, texts=TEXTS):
    import modelport

    session = modelport.load(bundle_path)
    with session:
        feeds = session.bundle.tokenizer().encode(list(texts), dict(session.inputs))
        return session.infer(feeds), session.bundle.manifest


@pytest.mark.parametrize("target", FP32_TARGETS)
def test_text_classifier_logits_match_transformers(hf_folders, hf_bundles, target):
    ref, _ = _hf_text_reference(hf_folders["bert-multilabel"], "AutoModelForSequenceClassification")
    got, manifest = _bundle_text_outputs(hf_bundles["bert-multilabel"][target])
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask",
                                                        "token_type_ids"]
    assert manifest["outputs"][0]["name"] == "logits"
    np.testing.assert_allclose(got["logits"], ref.logits.numpy(), atol=ATOL, rtol=0)
    pre = manifest["preprocessing"]
    assert pre["task"] == "text-classification" and pre["multi_label"] is True
    assert pre["id2label"] == {"0": "sports", "1": "tech", "2": "travel", "3": "food"}
    assert pre["max_length"] == 64 and pre["tokenizer"] == "tokenizer.json"
    assert manifest["model"]["task"] == "classification"
    assert manifest["model"]["metadata"]["hf_task"] == "text-classification"


@pytest.mark.parametrize("target", FP32_TARGETS)
def test_token_classifier_logits_match_transformers(hf_folders, hf_bundles, target):
    ref, mask = _hf_text_reference(hf_folders["distilbert-ner"], "AutoModelForTokenClassification")
    got, manifest = _bundle_text_outputs(hf_bundles["distilbert-ner"][target])
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask"]
    assert manifest["outputs"][0]["shape"] == ["batch", "seq", 5]
    np.testing.assert_allclose(got["logits"][mask], ref.logits.numpy()[mask], atol=ATOL, rtol=0)


@pytest.mark.parametrize("target", FP32_TARGETS)
def test_plain_encoder_hidden_states_match_transformers(hf_folders, hf_bundles, target):
    ref, mask = _hf_text_reference(hf_folders["roberta-encoder"], "AutoModel")
    got, manifest = _bundle_text_outputs(hf_bundles["roberta-encoder"][target])
    assert manifest["preprocessing"]["max_length"] == 64  # 66 positions, offset by padding
    np.testing.assert_allclose(got["last_hidden_state"][mask],
                               ref.last_hidden_state.numpy()[mask], atol=ATOL, rtol=0)


@pytest.mark.parametrize("target", FP32_TARGETS)
def test_image_classifier_matches_transformers_with_its_processor(hf_folders, hf_bundles,
                                                                   target, tmp_path):
    import torch
    from PIL import Image
    from transformers import ViTForImageClassification, ViTImageProcessor

    import modelport
    from modelport.tasks.image import load_pixels

    folder = hf_folders["vit-classifier"]
    files = sorted(write_images(tmp_path / "imgs", 3).iterdir())
    processor = ViTImageProcessor.from_pretrained(folder, local_files_only=True)
    images = [Image.open(f).convert("RGB") for f in files]
    hf_pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    model = ViTForImageClassification.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        ref = model(pixel_values=hf_pixels).logits.numpy()
    session = modelport.load(hf_bundles["vit-classifier"][target])
    params = session.bundle.manifest["preprocessing"]["image"]
    ours = np.concatenate([load_pixels(f, params) for f in files])
    np.testing.assert_allclose(ours, hf_pixels.numpy(), atol=1e-5, rtol=0)
    with session:
        got = session.infer({"pixel_values": ours})["logits"]
    assert session.inputs["pixel_values"].shape == ("batch", 3, 32, 32)
    np.testing.assert_allclose(got, ref, atol=ATOL, rtol=0)


# -- `modelport run` on each task ---------------------------------------------------------
def test_run_prints_sigmoid_labels_for_a_multilabel_classifier(hf_folders, hf_bundles, tmp_path):
    bundle = hf_bundles["bert-multilabel"]["onnxruntime:cpu:fp32"]
    ref, _ = _hf_text_reference(hf_folders["bert-multilabel"], "AutoModelForSequenceClassification",
                                TEXTS[:2])
    out = tmp_path / "run.json"
    proc = run_cli("run", str(bundle), "--text", TEXTS[0], "--text", TEXTS[1], "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    probs = 1 / (1 + np.exp(-ref.logits.numpy().astype(np.float64)))
    names = ["sports", "tech", "travel", "food"]
    data = json.loads(out.read_text())
    for row, p in zip(data["predictions"], probs, strict=True):
        shown = {s["label"]: s["score"] for s in row["labels"]}
        expected = {names[i]: p[i] for i in range(4) if p[i] >= 0.5} or {names[p.argmax()]: p.max()}
        assert shown.keys() == expected.keys()
        for label, score in shown.items():
            assert abs(score - expected[label]) < 1e-4
            assert f"{label}" in proc.stdout


def test_run_prints_one_label_per_word_for_token_classification(hf_folders, hf_bundles, tmp_path):
    bundle = hf_bundles["distilbert-ner"]["openvino:cpu:fp32"]
    ref, _ = _hf_text_reference(hf_folders["distilbert-ner"], "AutoModelForTokenClassification",
                                TEXTS[:2])
    out = tmp_path / "run.json"
    proc = run_cli("run", str(bundle), "--text", TEXTS[0], "--text", TEXTS[1], "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    # the first sub-token of each word: [CLS] is token 0; both texts are whole-word tokenized
    first = data["predictions"][0]["words"]
    assert [w["word"] for w in first] == ["John", "lives", "in", "Paris", "and", "works", "at",
                                          "Acme", "."]
    for row, (text_words, logits) in enumerate(zip(data["predictions"], ref.logits.numpy(),
                                                   strict=True)):
        for i, w in enumerate(text_words["words"]):
            assert w["label"] == labels[int(np.argmax(logits[i + 1]))], (row, w)
    assert "Paris" in proc.stdout


def test_run_image_file_and_npy(hf_bundles, tmp_path):
    from PIL import Image

    bundle = hf_bundles["vit-classifier"]["onnxruntime:cpu:fp32"]
    png = min(write_images(tmp_path / "imgs", 1).iterdir())
    npy = tmp_path / "img.npy"
    np.save(npy, np.asarray(Image.open(png).convert("RGB")))
    out = tmp_path / "run.json"
    proc = run_cli("run", str(bundle), "--image", str(png), "--image", str(npy), "--top-k", "2",
                   "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    preds = json.loads(out.read_text())["predictions"]
    assert len(preds) == 2 and preds[0]["labels"] == preds[1]["labels"]
    assert len(preds[0]["labels"]) == 2
    assert abs(sum(s["score"] for s in preds[0]["labels"])) <= 1.0 + 1e-6
    assert preds[0]["labels"][0]["label"] in ("cat", "dog", "bird")


def test_run_feature_extraction_prints_the_hidden_states(hf_bundles):
    proc = run_cli("run", str(hf_bundles["roberta-encoder"]["onnxruntime:cpu:fp32"]),
                   "--text", "a cat")
    assert proc.returncode == 0, proc.stderr
    assert "last_hidden_state: float32[1, " in proc.stdout


def test_run_image_on_a_text_bundle_is_a_usage_error(hf_bundles, tmp_path):
    png = min(write_images(tmp_path / "imgs", 1).iterdir())
    proc = run_cli("run", str(hf_bundles["roberta-encoder"]["onnxruntime:cpu:fp32"]),
                   "--image", str(png))
    assert proc.returncode == 2 and "not an image model" in proc.stderr


def test_image_int8_calibrated_on_a_png_folder(hf_bundles):
    import modelport

    bundle = hf_bundles["vit-classifier"]["onnxruntime:cpu:int8"]
    manifest = modelport.load(bundle).bundle.manifest
    assert "calib-images" in manifest["calibration"]["source"]
    assert manifest["calibration"]["samples"] + manifest["evaluation"]["samples"] == 24
    assert manifest["accuracy"]["metrics"]["cosine_mean"] > 0.9


# the device install runs here, beside the bundles it needs: in a file of its own it rebuilt
# every folder's export (hf_bundles) on whichever pytest-xdist worker it landed on
@pytest.mark.slow
def test_runtime_only_install_prints_labels(runtime_only_python, hf_bundles, tmp_path):
    """A device's install (`modelport[onnxruntime]`: no torch, no transformers) runs a
    classifier bundle made from a Hugging Face folder and prints its labels."""
    import subprocess

    bundle = str(hf_bundles["bert-multilabel"]["onnxruntime:cpu:fp32"])
    device_json, build_json = tmp_path / "device.json", tmp_path / "build.json"
    proc = subprocess.run(
        [str(runtime_only_python), "-m", "modelport.cli", "run", bundle, "--text", TEXTS[0],
         "--text", TEXTS[2], "--json", str(device_json)],
        check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    here = run_cli("run", bundle, "--text", TEXTS[0], "--text", TEXTS[2], "--json",
                   str(build_json))
    assert here.returncode == 0, here.stderr
    assert proc.stdout == here.stdout  # the same labels and scores as on the build machine
    assert json.loads(device_json.read_text())["predictions"][0]["labels"]
    probe = subprocess.run(
        [str(runtime_only_python), "-c", ("import importlib.util as u; print([u.find_spec(m) "
                                          "is None for m in ('torch', 'transformers', 'PIL')])")],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert probe.stdout.strip() == "[True, True, True]", probe.stderr
