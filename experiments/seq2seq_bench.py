"""Encoder-decoder table: chrF vs torch, encoder (+ first step) time, ms per decoder step
p50/p99, tokens/s and size of a random-init T5-small-shaped model (~35M parameters: d_model
512, 4 + 4 layers, vocab 8192) on every text2text-generation target, from one
`modelport.export` call (the real pipeline: two-graph export + validation, builds, greedy
generation on the evaluation texts vs transformers, the generation timing).

    .venv/bin/python experiments/seq2seq_bench.py     # writes experiments/seq2seq_results/

Random weights make the text meaningless; the timings and the weight-only chrF are what the
table is for. The load average is recorded: on a shared machine only the ratios within one run
mean anything.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "seq2seq_results"
TARGETS = ["onnxruntime:cpu:fp32", "onnxruntime:cpu:int8wo", "onnxruntime:cpu:int4",
           "openvino:cpu:fp32", "openvino:cpu:int8wo", "openvino:cpu:int4"]


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
    from stamp import stamp

    import modelport
    from modelport.bench.export_table import export_markdown
    from modelport.errors import AccuracyBudgetExceeded

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("nncf", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.WARNING)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        params = write_folder(Path(tmp) / "t5-random")
        try:
            result = modelport.export(str(Path(tmp) / "t5-random"), TARGETS,
                                      out=Path(tmp) / "bundles", progress=False)
        except AccuracyBudgetExceeded as exc:  # the table still shows every row
            result = exc.result
    load_after = os.getloadavg()[0]
    OUT.mkdir(exist_ok=True)
    (OUT / "seq2seq.json").write_text(json.dumps({"rows": result.rows, "parameters": params,
                                                  "load_avg": [load_before, load_after]},
                                                 indent=1, default=str))
    table = export_markdown(result.rows)
    note = (f"{stamp()} · {params / 1e6:.1f}M parameters · load average {load_before:.1f} "
            f"before / {load_after:.1f} after (a 2-core machine shared with other jobs)")
    (OUT / "seq2seq.md").write_text(f"{table}\n\n{note}\n")
    print(table)
    print(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
