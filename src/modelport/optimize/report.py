"""The recipe search's table under the export table: every candidate of every searched target,
its figures, fidelity and whether it was kept, dropped (and why) or chosen."""

from __future__ import annotations

from typing import Any

from modelport.bench.table import fmt_num, render

COLUMNS = [
    ("mark", "", str),
    ("name", "candidate", str),
    ("stage", "stage", str),
    ("p50_ms", "p50 ms", fmt_num(3)),
    ("throughput", "thru/s", fmt_num(1)),
    ("fidelity_text", "fidelity", str),
    ("verdict", "kept / why", str),
]


def search_tables(rows: list[dict[str, Any]]) -> str:
    """One table per searched target ('' when no row was searched)."""
    parts = []
    for row in rows:
        search = row.get("search")
        if not search:
            continue
        parts.append(search_table(row["target"], search))
    return "".join(f"\n\n{p}" for p in parts)


def search_table(target: str, search: dict[str, Any]) -> str:
    if search.get("skipped"):
        return f"recipe search for {target}: skipped ({search['skipped']})"
    head = (f"recipe search for {target} (--optimize {search['objective']}, batch "
            f"{search['batch']}, CPU kind {search['cpu_kind']}, {search['seconds']:.0f} s of "
            f"{search['max_time_s']:.0f}"
            + (", cut short by --max-time" if search.get("cut_short") else "")
            + (", from the cache: the figures of the search that chose it" if search.get("cached")
               else "")
            + f"): chose '{search['chosen']}'"
            + (f" with {_runtime(search['runtime_settings'])}" if search["runtime_settings"]
               else "")
            + (f"; {search['note']}" if search.get("note") else ""))
    cells = []
    for c in search["candidates"]:
        r = dict(c)
        r["mark"] = "*" if c.get("chosen") else ""
        r["name"] = c["name"] + (f" [{c['peer']}]" if c.get("peer") else "") \
            + (f" (= {c['same_as']})" if c.get("same_as") else "")
        f = c.get("fidelity") or {}
        r["fidelity_text"] = f"cos {f['cosine_mean']:.5f}" if "cosine_mean" in f else "-"
        if "top1_agreement" in f:
            r["fidelity_text"] += f", top-1 {100 * f['top1_agreement']:.1f}%"
        r["verdict"] = ("chosen" if c.get("chosen") else "kept" if c.get("kept") else "dropped") \
            + (f": {c['why']}" if c.get("why") else "")
        cells.append(r)
    return head + "\n" + render(cells, COLUMNS)


def _runtime(settings: dict[str, Any]) -> str:
    from modelport.optimize.candidates import Runtime

    try:
        return Runtime(**settings).describe()
    except TypeError:  # a setting this version does not know
        return ", ".join(f"{k} {v}" for k, v in settings.items())
