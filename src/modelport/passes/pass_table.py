"""PassReport tables for the terminal and for Markdown (REPORT.md, bench/RESULTS.md)."""

from __future__ import annotations

from typing import Any

from modelport.bench.table import render, render_markdown


def _ratio(a: Any, b: Any) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _metric(m: dict[str, float]) -> str:
    if not m:
        return "-"
    if "accuracy" in m:
        return f"acc {100 * m['accuracy']:.2f}%"
    if "cosine_to_teacher" in m:
        return f"cos {m['cosine_to_teacher']:.4f}"
    return "-"


def _rows(reports: list) -> list[dict[str, Any]]:
    rows = []
    for r in reports:
        rows.append({
            "pass": r.name,
            "params": f"{r.params_before:,} -> {r.params_after:,}",
            "params_x": _ratio(r.params_before, r.params_after),
            "flops_x": _ratio(r.flops_before, r.flops_after),
            "gzip_x": _ratio(r.gzip_bytes_before, r.gzip_bytes_after),
            "sparsity": f"{100 * r.sparsity_after:.1f}%",
            "metric": f"{_metric(r.metric_before)} -> {_metric(r.metric_after)}",
            "seconds": f"{r.seconds:.1f}",
            "notes": "; ".join(r.notes) or "-",
        })
    return rows


COLUMNS = [("pass", "pass", str), ("params", "params", str), ("params_x", "params ÷", str),
           ("flops_x", "FLOPs ÷", str), ("gzip_x", "gzip ÷", str), ("sparsity", "zeros", str),
           ("metric", "eval metric before -> after", str), ("seconds", "s", str),
           ("notes", "notes", str)]


def pass_table(reports: list) -> str:
    return render(_rows(reports), COLUMNS)


def pass_markdown(reports: list) -> str:
    return render_markdown(_rows(reports), COLUMNS)
