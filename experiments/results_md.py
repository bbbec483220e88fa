"""Write one section of experiments/RESULTS.md (or one block of README.md or a docs/ page)
between markers, leaving the rest alone.

Every benchmark script owns its sections, so re-running one never erases another's numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: the docs page that holds each script-written block (the prose around it says what it is)
DOCS = ROOT / "docs"
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


def update_doc_block(page: Path, name: str, body: str) -> Path:
    """Replace ``page``'s ``<!-- name:begin -->`` ... ``<!-- name:end -->`` block (README.md or
    a docs/ page); the markers must already be there (the page's prose says where a table goes)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = page.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        raise SystemExit(f"{page.relative_to(ROOT)} has no {begin} ... {end} markers")
    block = f"{begin}\n{body.strip()}\n{end}"
    text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text,
                  flags=re.DOTALL)
    page.write_text(text, encoding="utf-8")
    return page


def update_block(path: Path, name: str, body: str, *, heading: str) -> Path:
    """Replace the ``<!-- name:begin -->`` ... ``<!-- name:end -->`` block of ``path`` (a page
    several scripts and people write into); without the markers, append ``heading`` and the
    block at the end. Everything outside the block stays as it is."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{begin}\n{body.strip()}\n{end}"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text,
                      flags=re.DOTALL)
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + f"{heading}\n\n{block}\n"
    path.write_text(text, encoding="utf-8")
    return path
