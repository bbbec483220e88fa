"""Language-model table: perplexity, time to first token, ms/token, tokens/s and size of
builtin:tiny-lm on every LM target, torch FP32 timed in the same run.

    .venv/bin/python experiments/lm_bench.py            # writes experiments/lm_results/

Everything comes from one `modelport.export` call (the real pipeline: KV-cache export +
validation, builds, perplexity on the evaluation split, the LM harness with the same prompt and
context for every row). The machine's load average is recorded next to the table: on a shared
machine the absolute times move, only the ratios within one run mean anything.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "experiments" / "lm_results"
TARGETS = ["onnxruntime:cpu:fp32", "onnxruntime:cpu:int8", "onnxruntime:cpu:int8wo",
           "onnxruntime:cpu:int4", "openvino:cpu:fp32", "openvino:cpu:int8",
           "openvino:cpu:int8wo", "openvino:cpu:int4"]


def main() -> int:
    sys.path.insert(0, str(ROOT / "experiments"))
    from stamp import stamp

    import modelport
    from modelport.bench.export_table import export_markdown

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("nncf", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.WARNING)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        result = modelport.export("builtin:tiny-lm", TARGETS, out=Path(tmp), progress=False)
    load_after = os.getloadavg()[0]
    OUT.mkdir(exist_ok=True)
    (OUT / "lm.json").write_text(json.dumps({"rows": result.rows, "load_avg": [
        load_before, load_after]}, indent=1, default=str))
    table = export_markdown(result.rows)
    note = (f"{stamp()} · load average {load_before:.1f} before / {load_after:.1f} after "
            "(a 2-core machine shared with other engineers' jobs)")
    (OUT / "lm.md").write_text(f"{table}\n\n{note}\n")
    print(table)
    print(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
