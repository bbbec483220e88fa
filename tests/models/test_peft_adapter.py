"""A PEFT LoRA adapter folder whose base is a local folder: merged, exported, recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.models.checkpoints import TEXTS, bert_multilabel_classifier

pytestmark = pytest.mark.onnxruntime


def test_lora_adapter_is_merged_and_recorded(tmp_path):
    peft = pytest.importorskip("peft")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import modelport

    base_dir = bert_multilabel_classifier(tmp_path / "base")
    base = AutoModelForSequenceClassification.from_pretrained(base_dir, local_files_only=True)
    config = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8,
                             target_modules=["query", "value"])
    lora = peft.get_peft_model(base, config)
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA B starts at zero: make the adapter change the outputs
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    adapter_dir = tmp_path / "adapter"
    lora.save_pretrained(adapter_dir)
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "../base"  # relative to the adapter folder
    (adapter_dir / "adapter_config.json").write_text(json.dumps(cfg))

    tok = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    feeds = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = lora.eval()(**feeds).logits.numpy()
        plain = AutoModelForSequenceClassification.from_pretrained(
            base_dir, local_files_only=True).eval()(**feeds).logits.numpy()
    assert np.abs(want - plain).max() > 1e-2  # the adapter matters

    result = modelport.export(str(adapter_dir), ["onnxruntime:cpu:fp32"], out=tmp_path / "b",
                              bench=None, progress=False)
    session = modelport.load(result.bundles["onnxruntime:cpu:fp32"])
    with session:
        got = session.infer(session.bundle.tokenizer().encode(TEXTS, session.inputs))["logits"]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    record = session.bundle.manifest["model"]["metadata"]["peft_adapter"]
    assert record["merged"] and record["r"] == 4 and record["peft_type"] == "LORA"
    assert sorted(record["target_modules"]) == ["query", "value"]
    assert record["base"] == str(base_dir.resolve())
