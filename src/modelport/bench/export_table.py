"""The results table every command prints: one row per target, the reference first."""

from __future__ import annotations

from typing import Any

from modelport.bench.table import fmt_num, render, render_markdown

#: a task's own metric (tasks/: its ``accuracy``) -> how the table's cell names it
TASK_METRIC_CELLS = {"exact_match": "EM", "masked_top1_agreement": "top-1@mask",
                     "chrf": "chrF"}


def fidelity_text(f: dict[str, Any] | None) -> str:
    """One cell: accuracy (and its drop) for classifiers, mean cosine otherwise."""
    if not f:
        return "-"
    if "perplexity" in f:  # language models
        return f"ppl {f['perplexity']:.3f} ({100 * f.get('perplexity_increase', 0.0):+.2f}%)"
    if "wer" in f and "token_match" in f:  # Whisper: transcripts vs torch's
        return f"WER {100 * f['wer']:.2f} ({100 * f['token_match']:.0f}% equal)"
    if "accuracy" in f:
        name = next((short for key, short in TASK_METRIC_CELLS.items() if key in f), "acc")
        return f"{name} {100 * f['accuracy']:.2f}% ({-100 * f['accuracy_drop']:+.2f})"
    return f"cos {f['cosine_mean']:.4f}"


def decisions_text(f: dict[str, Any] | None) -> str:
    """Top-1 agreement with the reference: the share of decisions a classifier kept (the bench
    report's fidelity cell shows the same number)."""
    value = (f or {}).get("top1_agreement")
    return "-" if value is None else f"{100 * value:.1f}%"


def _speed(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}x"


EXPORT_COLUMNS = [
    ("target", "target", str),
    ("precision", "prec", str),
    ("size_mb", "size MB", fmt_num(1)),
    ("fidelity_text", "fidelity vs ref", str),
    ("p50_ms", "p50 ms", fmt_num(2)),
    ("p90_ms", "p90 ms", fmt_num(2)),
    ("p99_ms", "p99 ms", fmt_num(2)),
    ("throughput", "thru/s", fmt_num(1)),
    ("speedup_latency", "speedup b1", _speed),
    ("speedup_throughput", "speedup thru", _speed),
    ("status", "status", str),
]


#: language models (rows with a perplexity): token latency instead of batch latency
LM_COLUMNS = [
    ("target", "target", str),
    ("precision", "prec", str),
    ("size_mb", "size MB", fmt_num(1)),
    ("fidelity_text", "perplexity vs ref", str),
    ("ttft_ms", "TTFT ms", fmt_num(2)),
    ("decode_ms_p50", "ms/token p50", fmt_num(2)),
    ("decode_ms_p99", "p99", fmt_num(2)),
    ("tokens_per_s", "tokens/s", fmt_num(1)),
    ("status", "status", str),
]


#: encoder-decoder models (rows with an encoder time): generation timing at batch 1
SEQ2SEQ_COLUMNS = [
    ("target", "target", str),
    ("precision", "prec", str),
    ("size_mb", "size MB", fmt_num(1)),
    ("fidelity_text", "chrF vs torch", str),
    ("encoder_ms", "encoder ms", fmt_num(2)),
    ("ttft_ms", "TTFT ms", fmt_num(2)),
    ("decode_ms_p50", "ms/step p50", fmt_num(2)),
    ("decode_ms_p99", "p99", fmt_num(2)),
    ("tokens_per_s", "tokens/s", fmt_num(1)),
    ("peak_rss_mb", "peak MB", fmt_num(0)),
    ("status", "status", str),
]


#: after the fidelity cell: the decisions kept (classifier outputs only) and the judging metric
DECISIONS_COLUMN = ("decisions", "decisions", str)
JUDGED_BY_COLUMN = ("judged_by", "judged by", str)


def columns_for(rows: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    if any("perplexity" in r for r in rows):
        return LM_COLUMNS
    if any("chrf" in (r.get("fidelity") or {}) for r in rows):
        return SEQ2SEQ_COLUMNS
    if any({"wer", "token_match"} <= set(r.get("fidelity") or {}) for r in rows):  # Whisper
        return [("fidelity_text", "WER vs torch", str) if c[0] == "fidelity_text" else c
                for c in SEQ2SEQ_COLUMNS]
    at = [key for key, _, _ in EXPORT_COLUMNS].index("fidelity_text") + 1
    extra = [DECISIONS_COLUMN] if any("top1_agreement" in (r.get("fidelity") or {})
                                      for r in rows) else []
    if any(r.get("judged_by") for r in rows):
        extra.append(JUDGED_BY_COLUMN)
    return EXPORT_COLUMNS[:at] + extra + EXPORT_COLUMNS[at:]


def status_cell(row: dict[str, Any]) -> str:
    """The status (one of bench.statuses) and, where it matters, what followed from it."""
    status = row.get("status") or ("reference" if row.get("reference") else "-")
    if status in ("below budget", "slower than fp32") and row.get("failure"):
        return f"{status}, no bundle"
    if row.get("added_for_comparison"):
        return f"{status} (added for comparison, no bundle)"
    if status == "failed" and row.get("reason"):
        return f"failed: {str(row['reason'])[:60]}"
    return str(status)


def _prepare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        r = dict(row)
        r["fidelity_text"] = fidelity_text(row.get("fidelity"))
        r["decisions"] = decisions_text(row.get("fidelity"))
        r["judged_by"] = row.get("judged_by") or "-"
        r["status"] = status_cell(row)
        out.append(r)
    return out


def batch_note(rows: list[dict[str, Any]]) -> str:
    ref = rows[0] if rows else {}
    lat, thr = ref.get("latency_batch"), ref.get("throughput_batch")
    return (f"latency at batch {lat}, throughput at batch {thr}; speedups vs {ref.get('target')} "
            "measured in this run") if lat else ""


def export_table(rows: list[dict[str, Any]]) -> str:
    note = batch_note(rows)
    return render(_prepare(rows), columns_for(rows)) + (f"\n({note})" if note else "")


def export_markdown(rows: list[dict[str, Any]]) -> str:
    return render_markdown(_prepare(rows), columns_for(rows))
