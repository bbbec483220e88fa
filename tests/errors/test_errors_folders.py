"""Error catalog, part 5: Hugging Face folders whose weights cannot be loaded.

A damaged weights file is found by reading the safetensors header before anything is loaded
(so `inspect` refuses it too); weights that do not fit the config fail in transformers and are
said in one line. One test per row of tests/support/error_catalog.py, like the other parts.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from modelport.errors import ModelLoadError
from tests.conftest import run_cli
from tests.errors.test_errors_catalog import export_fails
from tests.support.catalog_support import assert_user_error

WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    """A tiny random-init BertForSequenceClassification folder (save_pretrained's output)."""
    from tests.models.checkpoints import bert_multilabel_classifier

    return bert_multilabel_classifier(tmp_path_factory.mktemp("hf") / "bert")


def _copy(bert: Path, dst: Path) -> Path:
    shutil.copytree(bert, dst)
    return dst


def test_hf_weights_truncated(bert, tmp_path):
    folder = _copy(bert, tmp_path / "truncated")
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])
    line = export_fails(tmp_path, folder, ModelLoadError, WEIGHTS, "truncated",
                        f"{len(data) // 2} bytes", f"describes {len(data)}", "copy it again")
    assert "safetensors_rust" not in line
    # inspect reads no weights, yet refuses the folder the same way
    assert_user_error(run_cli("inspect", str(folder)), WEIGHTS, "truncated")


def test_hf_weights_garbage(bert, tmp_path):
    folder = _copy(bert, tmp_path / "garbage")
    (folder / WEIGHTS).write_bytes(os.urandom(4096))
    export_fails(tmp_path, folder, ModelLoadError, WEIGHTS, "not a safetensors file")
    (folder / WEIGHTS).write_bytes(b"")
    with pytest.raises(ModelLoadError, match="is empty"):
        _plan(folder)
    # a JSON header whose byte ranges are not numbers is no safetensors header either
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": ["a", 4]}}).encode()
    (folder / WEIGHTS).write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    with pytest.raises(ModelLoadError, match="not a safetensors file"):
        _plan(folder)


def test_hf_weights_shard_missing(bert, tmp_path):
    folder = _copy(bert, tmp_path / "sharded")
    (folder / WEIGHTS).rename(folder / "model-00001-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                           "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    export_fails(tmp_path, folder, ModelLoadError, "model-00002-of-00002.safetensors",
                 "is missing", "2 weight shards")


def test_hf_weights_mismatch_config(bert, tmp_path):
    folder = _copy(bert, tmp_path / "mismatch")
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] *= 2
    (folder / "config.json").write_text(json.dumps(config))
    line = export_fails(tmp_path, folder, ModelLoadError, "cannot load the weights",
                        "shape differs", "save_pretrained()")
    assert "above report" not in line


def _plan(folder: Path):
    from modelport.models.hf.describe import plan_folder

    return plan_folder(folder)
