"""Write one section of experiments/RESULTS.md (or one block of README.md) between markers,
leaving the rest alone.

Every benchmark script owns its sections, so re-running one never erases another's numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
README = Path(__file__).resolve().parents[1] / "README.md"
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


def update_readme_block(name: str, body: str) -> Path:
    """Replace README.md's ``<!-- name:begin -->`` ... ``<!-- name:end -->`` block; the markers
    must already be there (the README's prose says where a table goes)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = README.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        raise SystemExit(f"README.md has no {begin} ... {end} markers")
    block = f"{begin}\n{body.strip()}\n{end}"
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text,
                  flags=re.DOTALL)
    README.write_text(text, encoding="utf-8")
    return README
