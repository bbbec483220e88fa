"""Write one section of experiments/RESULTS.md between markers, leaving the other sections alone.

Every benchmark script owns one section, so re-running one never erases another's numbers.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = (
    "# modelport benchmark results\n\n"
    "Every table is one run of the named script: each ratio is measured side by side in that run\n"
    "(artifact vs PyTorch eager FP32 on the same inputs), never against a number from another day.\n"
)


def update_section(name: str, body: str) -> Path:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else HEADER
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text, encoding="utf-8")
    return RESULTS
