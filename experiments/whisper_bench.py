"""Whisper table: WER vs torch, time to the first token (encoder + prompt), ms per decoder
step p50/p99, tokens/s and size of a random-init whisper-tiny-shaped model (d_model 384, 4 + 4
layers, 6 heads, 80 mels, vocab 51865: ~38M parameters) on every Whisper target, from one
`modelport.export` call (two-graph export + validation against torch, builds, greedy
generation on the evaluation audio vs transformers, the generation timing).

    .venv/bin/python experiments/whisper_bench.py     # writes experiments/seq2seq_results/

Random weights (transformers' own init) make the transcripts meaningless (the test tokenizer,
filled up to the model's vocabulary with word tokens ``w{i}``): the timings, sizes, WER vs
torch and whether weight-only keeps transformers' tokens are what the table is for. eos is
suppressed in this folder's generation config so every run decodes its 20 steps;
``--allow-accuracy-drop`` keeps (and times) a target over its WER budget. The load average is
recorded: on a shared machine only ratios within one run mean anything.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "seq2seq_results"
TARGETS = ["onnxruntime:cpu:fp32", "onnxruntime:cpu:int8wo", "onnxruntime:cpu:int4",
           "onnxruntime:cpu:int8", "openvino:cpu:fp32", "openvino:cpu:int8wo",
           "openvino:cpu:int4", "openvino:cpu:int8"]
DIMS = {"vocab_size": 51865, "d_model": 384, "encoder_layers": 4, "decoder_layers": 4,
        "encoder_attention_heads": 6, "decoder_attention_heads": 6, "encoder_ffn_dim": 1536,
        "decoder_ffn_dim": 1536, "max_target_positions": 448}


def write_folder(folder: Path) -> int:
    sys.path.insert(0, str(ROOT))
    from safetensors import safe_open
    from tests.seq2seq.whisper_checkpoint import write_checkpoint

    write_checkpoint(folder, dims=DIMS, wide=False)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))  # words for every model token,
    tok.add_tokens([f" w{i}" for i in range(DIMS["vocab_size"] - tok.get_vocab_size())])
    tok.save(str(folder / "tokenizer.json"))  # so the transcripts' WER means something
    gen_path = folder / "generation_config.json"
    gen = json.loads(gen_path.read_text())
    gen["suppress_tokens"] = [*gen["suppress_tokens"], gen["eos_token_id"]]
    gen_path.write_text(json.dumps(gen, indent=1))
    with safe_open(str(folder / "model.safetensors"), "np") as weights:
        return sum(weights.get_tensor(k).size for k in weights.keys())  # noqa: SIM118 - not a dict


def main() -> int:
    sys.path.insert(0, str(ROOT / "experiments"))
    from stamp import publish, watch_load

    import modelport
    from modelport.bench.export_table import export_markdown
    from modelport.errors import AccuracyBudgetExceeded

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("nncf", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with watch_load() as loads, tempfile.TemporaryDirectory() as tmp:
        params = write_folder(Path(tmp) / "whisper-random")
        try:
            result = modelport.export(str(Path(tmp) / "whisper-random"), TARGETS,
                                      out=Path(tmp) / "bundles", progress=False,
                                      allow_accuracy_drop=True)
        except AccuracyBudgetExceeded as exc:  # the table still shows every row
            result = exc.result
    publish(OUT, "whisper", export_markdown(result.rows), {"rows": result.rows,
                                                          "parameters": params}, loads,
            facts=[f"{params / 1e6:.1f}M parameters"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
