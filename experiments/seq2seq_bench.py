"""Encoder-decoder table: chrF vs torch, encoder time, time to first token, ms per decoder
step p50/p99, tokens/s, peak memory and size of a random-init T5-small-shaped model (~35M
parameters: d_model 512, 4 + 4 layers, vocab 8192) on every text2text-generation target, from one
`modelport.export` call (the real pipeline: two-graph export + validation, builds, greedy
generation on the evaluation texts vs transformers, the generation timing).

    .venv/bin/python experiments/seq2seq_bench.py     # writes experiments/seq2seq_results/

Random weights make the text meaningless; the timings and the weight-only chrF are what the
table is for. The load average is recorded: on a shared machine only the ratios within one run
mean anything.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "seq2seq_results"
TARGETS = ["onnxruntime:cpu:fp32", "onnxruntime:cpu:int8wo", "onnxruntime:cpu:int4",
           "onnxruntime:cpu:int8", "openvino:cpu:fp32", "openvino:cpu:int8wo",
           "openvino:cpu:int4", "openvino:cpu:int8"]


def write_folder(folder: Path) -> int:
    import torch
    import transformers as tf

    sys.path.insert(0, str(ROOT))
    from tests.seq2seq.checkpoints import write_tokenizer

    folder.mkdir(parents=True)
    config = tf.T5Config(vocab_size=8192, d_model=512, d_ff=2048, d_kv=64, num_heads=8,
                         num_layers=4, num_decoder_layers=4, decoder_start_token_id=0,
                         pad_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    model = tf.T5ForConditionalGeneration(config).eval()
    model.save_pretrained(str(folder))
    write_tokenizer(folder, "t5")
    return sum(p.numel() for p in model.parameters())


def main() -> int:
    sys.path.insert(0, str(ROOT / "experiments"))
    from stamp import export_rows, publish, quiet_logging, watch_load

    from modelport.bench.export_table import export_markdown

    quiet_logging()
    with watch_load() as loads, tempfile.TemporaryDirectory() as tmp:
        params = write_folder(Path(tmp) / "t5-random")
        rows = export_rows(str(Path(tmp) / "t5-random"), TARGETS, Path(tmp) / "bundles")
    publish(OUT, "seq2seq", export_markdown(rows), {"rows": rows, "parameters": params}, loads,
            facts=[f"{params / 1e6:.1f}M parameters"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
