"""``sweep --optimize`` in the sweep's table and report.md: per device and target, the candidate
that won, its runtime settings and figures, and which device timed it; then every candidate of
each distinct search (devices of one CPU kind share one) as ``export --optimize`` prints it."""

from __future__ import annotations

from typing import Any

from modelport.bench.table import fmt_num, render

COLUMNS = [
    ("machine", "machine", str),
    ("target", "target", str),
    ("cpu_kind", "CPU kind", str),
    ("chosen", "chosen candidate", str),
    ("settings", "runtime settings", str),
    ("p50_ms", "p50 ms", fmt_num(3)),
    ("throughput", "thru/s", fmt_num(1)),
    ("candidates", "candidates", str),
    ("timed_on", "timed on", str),
]


def searched_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in report.get("rows") or () if (r.get("search") or {}).get("candidates")]


def summary(report: dict[str, Any]) -> str:
    """One line per (device, target): what won there ('' without --optimize)."""
    cells = []
    for row in searched_rows(report):
        s = row["search"]
        won = next((c for c in s["candidates"] if c.get("chosen") and c.get("stage") ==
                    "runtime"), None) or next((c for c in s["candidates"] if c.get("chosen")), {})
        kept = sum(1 for c in s["candidates"] if c.get("stage") == "recipe" and c.get("kept"))
        recipes = sum(1 for c in s["candidates"] if c.get("stage") == "recipe")
        cells.append({
            "machine": row.get("machine"), "target": row["target"],
            "cpu_kind": s.get("cpu_kind"), "chosen": s.get("chosen"),
            "settings": ", ".join(f"{k} {v}" for k, v in (s.get("runtime_settings") or {})
                                  .items()) or "defaults",
            "p50_ms": won.get("p50_ms"), "throughput": won.get("throughput"),
            "candidates": f"{kept} of {recipes} within budget",
            "timed_on": _timed_on(s)})
    if not cells:
        return ""
    return (f"recipe search (--optimize {searched_rows(report)[0]['search']['objective']}), "
            "the winner per device:\n" + render(cells, COLUMNS))


def _timed_on(search: dict[str, Any]) -> str:
    """The device that timed the candidates; the search cache's record when it came from
    there (the device of the search that chose it); the note when none did."""
    if search.get("cached"):
        return "search cache" + (f" (timed on {search['timed_on']})"
                                 if search.get("timed_on") else "")
    return search.get("timed_on") or search.get("note") or "-"


def details(report: dict[str, Any]) -> list[str]:
    """Every candidate of each distinct search (one per target and CPU kind)."""
    from modelport.optimize.report import search_table

    seen, parts = set(), []
    for row in searched_rows(report):
        s = row["search"]
        key = (row["target"], s.get("cpu_kind"), s.get("timed_on"), s.get("chosen"))
        if key in seen:
            continue
        seen.add(key)
        where = f" on {s['timed_on']}" if s.get("timed_on") else ""
        parts.append(search_table(f"{row['target']}{where}", s))
    return parts


def search_text(report: dict[str, Any]) -> str:
    """What follows the sweep's table on the terminal ('' without --optimize)."""
    head = summary(report)
    return "" if not head else "\n\n" + head + "".join(f"\n\n{p}" for p in details(report))


def search_markdown(report: dict[str, Any]) -> str:
    """report.md's section ('' without --optimize)."""
    head = summary(report)
    if not head:
        return ""
    blocks = "".join(f"\n```\n{p}\n```\n" for p in [head, *details(report)])
    return "\n## Recipe search (--optimize)\n" + blocks
