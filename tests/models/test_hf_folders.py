"""Hugging Face folders before any export: detection, `inspect`, and one-line refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.models.checkpoints import TEXTS, electra_cls_sentence_embedder


def _inspect(folder, *extra):
    """What `inspect --json` prints (in-process: each CLI start imports transformers)."""
    from modelport.models.hf.describe import plan_folder

    task = extra[1] if extra else None
    return json.loads(json.dumps(plan_folder(folder, task=task).to_dict()))


def test_inspect_says_task_inputs_and_outputs_for_each_task(hf_folders, minilm_folder):
    plan = _inspect(hf_folders["bert-multilabel"])
    assert plan["task"] == "text-classification"
    assert plan["detected_from"] == "architectures: BertForSequenceClassification"
    assert [i["name"] for i in plan["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert plan["outputs"] == [{"name": "logits", "dtype": "float32", "shape": ["batch", 4]}]
    assert plan["preprocessing"]["multi_label"] is True

    plan = _inspect(hf_folders["distilbert-ner"])
    assert plan["task"] == "token-classification"
    assert plan["outputs"][0]["shape"] == ["batch", "seq", 5]

    plan = _inspect(hf_folders["vit-classifier"])
    assert plan["task"] == "image-classification" and plan["modality"] == "image"
    assert plan["inputs"] == [{"name": "pixel_values", "dtype": "float32",
                               "shape": ["batch", 3, 32, 32]}]
    assert plan["preprocessing"]["image"]["mean"] == [0.5, 0.4, 0.3]

    plan = _inspect(minilm_folder)
    assert plan["task"] == "feature-extraction"
    assert plan["detected_from"] == "sentence-transformers modules.json"
    assert plan["outputs"][0] == {"name": "sentence_embedding", "dtype": "float32",
                                  "shape": ["batch", 384]}
    assert plan["sentence_transformers"] == {"pooling": ["mean"], "normalize": True,
                                             "max_seq_length": 256}

    # --task overrides: the token classifier's encoder as a feature extractor
    plan = _inspect(hf_folders["distilbert-ner"], "--task", "feature-extraction")
    assert plan["outputs"][0]["name"] == "last_hidden_state" and plan["detected_from"] == "--task"

    proc = run_cli("inspect", str(hf_folders["roberta-encoder"]))
    assert proc.returncode == 0, proc.stderr
    assert "feature-extraction (from architectures: RobertaModel)" in proc.stdout
    assert "truncated to 64 tokens" in proc.stdout


def _copy(src, dst, drop=()):
    shutil.copytree(src, dst)
    for name in drop:
        (dst / name).unlink()
    return dst


def _one_line_error(folder, *extra, command="inspect"):
    args = [command, str(folder), *extra]
    if command == "export":
        args += ["--target", "onnxruntime:cpu:fp32", "--no-bench"]
    proc = run_cli(*args, timeout=300)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_bad_folders_get_one_line_errors(hf_folders, tmp_path):
    bert = hf_folders["bert-multilabel"]
    no_config = _copy(bert, tmp_path / "no-config", drop=["config.json"])
    assert "folder without config.json" in _one_line_error(no_config, command="export")

    no_weights = _copy(bert, tmp_path / "no-weights", drop=["model.safetensors"])
    assert "has no weights" in _one_line_error(no_weights)

    no_tokenizer = _copy(bert, tmp_path / "no-tok", drop=["tokenizer.json",
                                                            "tokenizer_config.json"])
    assert "has no tokenizer" in _one_line_error(no_tokenizer)

    remote = _copy(bert, tmp_path / "remote")
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_x.MyModel"}
    (remote / "config.json").write_text(json.dumps(config))
    message = _one_line_error(remote)
    assert "trust_remote_code" in message and "file.py:factory" in message

    unknown = _copy(bert, tmp_path / "multiple-choice")
    config = json.loads((unknown / "config.json").read_text())
    config["architectures"] = ["BertForMultipleChoice"]
    (unknown / "config.json").write_text(json.dumps(config))
    message = _one_line_error(unknown)
    for word in ("BertForMultipleChoice", "feature-extraction", "text-classification",
                 "token-classification", "image-classification", "file.py:factory"):
        assert word in message

    from modelport.errors import ModelLoadError
    from modelport.models.hf.describe import plan_folder

    with pytest.raises(ModelLoadError, match="unknown --task 'text-clasification'.*did you mean"):
        plan_folder(bert, task="text-clasification")


def test_pickle_checkpoint_needs_trust_pickle(hf_folders, tmp_path):
    import torch
    from safetensors.torch import load_file

    from modelport.models import resolve_model

    folder = _copy(hf_folders["bert-multilabel"], tmp_path / "pickled")
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    message = _one_line_error(folder, command="export")
    assert "pickle" in message and "--trust-pickle" in message
    prepared = resolve_model(folder, trust_pickle=True)
    assert prepared.metadata["hf_task"] == "text-classification"


def test_task_flag_on_a_non_folder_model_is_refused(tmp_path):
    from modelport.errors import ModelLoadError
    from modelport.models import resolve_model

    file = tmp_path / "tagger.py"
    file.write_text(FACTORY)
    # a factory takes --task only for the vision tasks whose post-processing it declares
    with pytest.raises(ModelLoadError, match="--task text-classification applies to Hugging "
                                             "Face checkpoint folders; a file.py:factory takes"):
        resolve_model(f"{file}:make", task="text-classification")


def test_sentence_transformers_cls_and_max_pooling_equal_encode(tmp_path):
    """A pipeline other than MiniLM's (CLS + max, no Normalize), on the torch side."""
    import torch

    st = pytest.importorskip("sentence_transformers")
    from modelport.models import resolve_model

    folder = electra_cls_sentence_embedder(tmp_path / "electra-st")
    prepared = resolve_model(folder)
    assert prepared.output_names == ["sentence_embedding"] and prepared.max_length == 48
    from modelport.calibration_data.text import TextTokenizer

    feeds = TextTokenizer(prepared.tokenizer_json, max_length=48).encode(
        TEXTS, prepared.input_specs)
    with torch.no_grad():
        got = prepared.module(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
    want = st.SentenceTransformer(str(folder), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


FACTORY = '''
import torch

class Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 8)
        self.out = torch.nn.Linear(8, 3)

    def forward(self, input_ids, attention_mask):
        return self.out(self.emb(input_ids) * attention_mask.unsqueeze(-1))

def make():
    ids = torch.randint(1, 50, (1, 7))
    return Tagger(), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, {
        "input_ids": {1: "seq"}, "attention_mask": {1: "seq"}}

def static_batch():
    ids = torch.randint(1, 50, (2, 7))
    return Tagger(), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, {
        "input_ids": {0: None, 1: "seq"}}
'''


def test_factory_naming_extra_axes_keeps_the_dynamic_batch(tmp_path):
    import modelport
    from modelport.models import resolve_model

    file = tmp_path / "tagger.py"
    file.write_text(FACTORY)
    prepared = resolve_model(f"{file}:make")
    assert [s.shape for s in prepared.inputs] == [("batch", "seq"), ("batch", "seq")]
    static = resolve_model(f"{file}:static_batch")
    assert [s.shape for s in static.inputs] == [(2, "seq"), ("batch", 7)]
    result = modelport.export(prepared, ["onnxruntime:cpu:fp32"], out=tmp_path / "b", bench=None,
                              progress=False)
    session = modelport.load(result.bundles["onnxruntime:cpu:fp32"])
    assert session.inputs["input_ids"].shape == ("batch", "seq")
    with session:
        out = session.infer({"input_ids": np.ones((3, 5), np.int64),
                             "attention_mask": np.ones((3, 5), np.int64)})
    assert next(iter(out.values())).shape == (3, 5, 3)
