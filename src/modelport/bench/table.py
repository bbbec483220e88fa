"""Plain-text tables for the terminal (no dependency; aligned columns, right-aligned numbers)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Column = tuple[str, str, Callable[[Any], str]]  # key, header, formatter


def fmt_num(digits: int = 2, suffix: str = "") -> Callable[[Any], str]:
    def fmt(value: Any) -> str:
        if value is None or value == "":
            return "-"
        if isinstance(value, (int, float)):
            return f"{value:.{digits}f}{suffix}"
        return str(value)

    return fmt


def render(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append([fmt(row.get(key)) for key, _, fmt in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    numeric = [
        all(_is_number(r[i]) for r in cells[1:]) and len(cells) > 1 for i in range(len(columns))
    ]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True)
        ).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def render_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(f(r.get(k)) for k, _, f in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def _is_number(text: str) -> bool:
    text = text.rstrip("x%").replace("×", "")
    if text == "-":
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True
