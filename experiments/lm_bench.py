"""Language-model table: perplexity, time to first token, ms/token, tokens/s and size of
builtin:tiny-lm on every LM target, torch FP32 timed in the same run.

    .venv/bin/python experiments/lm_bench.py            # writes experiments/lm_results/

Everything comes from one `modelport.export` call (the real pipeline: KV-cache export +
validation, builds, perplexity on the evaluation split, the LM harness with the same prompt and
context for every row). The machine's load average is recorded next to the table: on a shared
machine the absolute times move, only the ratios within one run mean anything.
"""

from __future__ import annotations

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
    from stamp import export_rows, publish, quiet_logging, watch_load

    from modelport.bench.export_table import export_markdown

    quiet_logging()
    with watch_load() as loads, tempfile.TemporaryDirectory() as tmp:
        rows = export_rows("builtin:tiny-lm", TARGETS, Path(tmp))
    publish(OUT, "lm", export_markdown(rows), {"rows": rows}, loads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
