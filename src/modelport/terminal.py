"""Text that reaches a terminal: what an exception or a library put there, made fit for one line.

Libraries colour their messages (torch.export's and the dynamo exporter's reports carry ANSI
escapes); the CLI prints every error and warning through ``strip_ansi`` so no escape codes reach
a user's terminal, a log file or a CI page.
"""

from __future__ import annotations

import re

# CSI sequences (colours, cursor moves: ESC [ params final), OSC sequences (ESC ] ... BEL or ST)
# and the two-character escapes (ESC followed by one of @-Z, \, ^, _)
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\^_]")


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences."""
    return _ANSI.sub("", text)


def exception_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line`` of an exception, escapes removed; for the dynamo exporter's long
    report, the line after its ``## Exception summary`` heading."""
    text = strip_ansi(str(exc)).strip()
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1].strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0].strip() if lines else ''}"[:limit]
