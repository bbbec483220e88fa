"""A PEFT LoRA adapter on a causal LM is merged into the exported graph (and recorded), and a
prompt longer than the model's context is refused (one line, exit 2), even when the folder's
tokenizer.json would truncate it; the bench report of an LM shows token latency. One tiny
Llama-style folder (context 32) and one adapter, exported once (timed, as `bench MODEL` does)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.errors import InputError
from tests.conftest import run_cli

pytestmark = [pytest.mark.onnxruntime]

CONTEXT = 32
PROMPT = [5, 17, 42, 9, 30, 11]


def write_llama_with_adapter(root: Path) -> tuple[Path, Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from modelport.models.data import sentences
    from modelport.models.tiny_lm import make_bpe_tokenizer, save_tokenizer

    base, adapter = root / "base", root / "adapter"
    base.mkdir(parents=True)
    tok = make_bpe_tokenizer(sentences()[:200], vocab_size=256)
    tok.enable_truncation(16)  # as some saved tokenizers carry: must not hide a long prompt
    save_tokenizer(tok, base, context=CONTEXT)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=CONTEXT, initializer_range=0.5,
                         eos_token_id=2, bos_token_id=None, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(str(base))
    GenerationConfig(eos_token_id=2, pad_token_id=0).save_pretrained(str(base))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                      init_lora_weights=False, task_type="CAUSAL_LM")  # B != 0: it changes logits
    get_peft_model(model, lora).save_pretrained(str(adapter))
    cfg_path = adapter / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(base)
    cfg_path.write_text(json.dumps(cfg))
    return base, adapter


@pytest.fixture(scope="module")
def lora_export(tmp_path_factory, eval_text):
    root = tmp_path_factory.mktemp("lm-lora")
    base, adapter = write_llama_with_adapter(root)
    from modelport.bench.harness import BenchSettings

    result = modelport.export(str(adapter), ["onnxruntime:cpu:fp32"], out=root / "bundles",
                              bench=BenchSettings(batch_sizes=(1,), warmup=1, iters=2),
                              eval=eval_text, progress=False)
    return base, adapter, result.bundles["onnxruntime:cpu:fp32"], result.rows


def torch_logits(base: Path, adapter: Path | None) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), local_files_only=True).eval()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload().eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([PROMPT])).logits.numpy()


def test_lora_adapter_is_merged_into_the_causal_lm_graph(lora_export):
    base, adapter, bundle, _ = lora_export
    manifest = json.loads((bundle / "manifest.json").read_text())
    record = manifest["model"]["metadata"]["peft_adapter"]
    assert record["merged"] is True and record["r"] == 4
    assert sorted(record["target_modules"]) == ["q_proj", "v_proj"]
    assert record["base"] == str(base.resolve())
    merged, plain = torch_logits(base, adapter), torch_logits(base, None)
    with modelport.load(bundle) as session:
        got = session.logits(np.array([PROMPT], np.int64), np.ones((1, len(PROMPT)), np.int64))
    assert np.abs(got - merged).max() <= 1e-4
    # the adapter moved the logits far more than the export's rounding: it was not dropped
    assert np.abs(plain - merged).max() > 100 * max(float(np.abs(got - merged).max()), 1e-6)


def test_prompt_past_the_context_is_refused(lora_export):
    _, _, bundle, _ = lora_export
    with modelport.load(bundle) as session:
        with pytest.raises(InputError, match=f"longer than the model's context length {CONTEXT}"):
            session.generate(np.ones((1, CONTEXT + 3), np.int64), max_new_tokens=1)
        with pytest.raises(InputError, match="lower --max-new-tokens to at most 2"):
            session.generate(np.ones((1, CONTEXT - 2), np.int64), max_new_tokens=5)
        assert session.generate(np.ones((1, CONTEXT - 2), np.int64), max_new_tokens=2).shape == (
            1, CONTEXT)
    # the folder's tokenizer.json truncates at 16 tokens: the CLI counts every token anyway
    long = " ".join(["the cat sat on the mat"] * 10)
    proc = run_cli("run", str(bundle), "--prompt", long, "--max-new-tokens", "2")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "longer than the model's context length 32" in lines[0], lines
    assert "Traceback" not in proc.stderr


def test_bench_report_of_a_language_model_has_token_latency_columns(lora_export):
    from modelport.bench import statuses
    from modelport.bench.matrix import _row
    from modelport.bench.report_doc import new_report
    from modelport.bench.report_tables import markdown_report, text_table

    rows = [_row(r) for r in lora_export[3]]  # what bench_model puts in its report
    report = new_report(model={"name": "lora-llama"}, rows=rows, settings={}, source="model",
                        reference=rows[0]["target"], fidelity_data=None)
    row = next(r for r in report["rows"] if r["target"] == "onnxruntime:cpu:fp32")
    assert row["status"] == statuses.OK
    assert row["ttft_ms"] > 0 and row["decode_ms_p50"] > 0 and row["tokens_per_s"] > 0
    assert row["decode_ms_p99"] >= row["decode_ms_p50"]
    table, markdown = text_table(report), markdown_report(report)
    for header in ("perplexity vs ref", "TTFT ms", "ms/token p50", "tokens/s", "peak MB"):
        assert header in table and header in markdown
    assert "ppl " in table and "thru/s" not in table
