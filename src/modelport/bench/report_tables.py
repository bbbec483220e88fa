"""Tables of a bench report: terminal text, report.md, and a target x machine pivot for merges."""

from __future__ import annotations

from typing import Any

from modelport.bench.table import Column, fmt_num, render, render_markdown


def fidelity_cell(f: dict[str, Any] | None) -> str:
    """Accuracy (and drop) when labels were known, else top-1 agreement, else mean cosine."""
    if not f:
        return "-"
    if "chrf" in f or {"wer", "token_match"} <= set(f):  # encoder-decoders: chrF / WER
        from modelport.bench.export_table import fidelity_text

        return fidelity_text(f)
    if "accuracy" in f:
        drop = f.get("accuracy_drop")
        return f"acc {100 * f['accuracy']:.2f}%" + (f" ({-100 * drop:+.2f})" if drop is not None
                                                    else "")
    if "top1_agreement" in f:
        from modelport.bench.export_table import decisions_text

        return f"top1 {decisions_text(f)}, cos {f['cosine_mean']:.4f}"
    if "cosine_mean" in f:
        return f"cos {f['cosine_mean']:.4f}"
    if "perplexity" in f:  # language models
        from modelport.bench.export_table import fidelity_text

        return fidelity_text(f)
    return "-"


def _speed(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _status(row: dict[str, Any]) -> str:
    reason = str(row.get("reason") or "").strip()
    # a runtime's multi-line exception: its first line in the table (report.json keeps it all)
    return f"{row['status']}: {reason.splitlines()[0]}" if reason else str(row["status"])


#: a language model's columns (rows with a perplexity): as the export table, plus peak memory
LM_COLUMNS: list[Column] = [
    ("target", "target", str),
    ("precision", "prec", lambda v: v or "-"),
    ("size_mb", "size MB", fmt_num(2)),
    ("fidelity_cell", "perplexity vs ref", str),
    ("ttft_ms", "TTFT ms", fmt_num(2)),
    ("decode_ms_p50", "ms/token p50", fmt_num(2)),
    ("decode_ms_p99", "p99", fmt_num(2)),
    ("tokens_per_s", "tokens/s", fmt_num(1)),
    ("peak_rss_mb", "peak MB", fmt_num(0)),
    ("status_cell", "status", str),
]


#: an encoder-decoder's columns (rows with an encoder time): the LM columns with the encoder
#: graph's own time before the TTFT (encoder + first decoder step)
SEQ2SEQ_COLUMNS: list[Column] = [
    *LM_COLUMNS[:3], ("fidelity_cell", "chrF vs torch", str),
    ("encoder_ms", "encoder ms", fmt_num(2)), *LM_COLUMNS[4:],
]


def is_lm_report(report: dict[str, Any]) -> bool:
    return any(r.get("ttft_ms") is not None or "perplexity" in (r.get("fidelity") or {})
               for r in report["rows"])


def columns(report: dict[str, Any]) -> list[Column]:
    cols: list[Column] = []
    if len(report["runs"]) > 1:
        cols.append(("machine", "machine", str))
    if any(r.get("encoder_ms") is not None for r in report["rows"]):
        if any({"wer", "token_match"} <= set(r.get("fidelity") or {}) for r in report["rows"]):
            return cols + [("fidelity_cell", "WER vs torch", str) if c[0] == "fidelity_cell"
                           else c for c in SEQ2SEQ_COLUMNS]  # Whisper: transcripts
        return cols + SEQ2SEQ_COLUMNS  # generation timing (bench.lm_harness.benchmark_seq2seq)
    if is_lm_report(report):  # token latency instead of batch latency (bench.lm_harness)
        return cols + LM_COLUMNS
    lat, thr = _batches(report)
    cols += [
        ("target", "target", str),
        ("precision", "prec", lambda v: v or "-"),
        ("size_mb", "size MB", fmt_num(2)),
        ("fidelity_cell", "fidelity vs ref", str),
        ("p50_ms", f"p50 ms (b{lat})" if lat else "p50 ms", fmt_num(3)),
        ("p99_ms", "p99 ms", fmt_num(3)),
        ("throughput", f"thru/s (b{thr})" if thr else "thru/s", fmt_num(1)),
        ("speedup_latency", "speedup lat", _speed),
        ("speedup_throughput", "speedup thru", _speed),
        ("peak_rss_mb", "peak MB", fmt_num(0)),
        ("status_cell", "status", str),
    ]
    return cols


def _batches(report: dict[str, Any]) -> tuple[Any, Any]:
    lats = {r.get("latency_batch") for r in report["rows"] if r.get("latency_batch")}
    thrs = {r.get("throughput_batch") for r in report["rows"] if r.get("throughput_batch")}
    return (lats.pop() if len(lats) == 1 else None), (thrs.pop() if len(thrs) == 1 else None)


def _cells(report: dict[str, Any]) -> list[dict[str, Any]]:
    lat, thr = _batches(report)
    cells = []
    for r in report["rows"]:
        cell = {**r, "fidelity_cell": fidelity_cell(r.get("fidelity")), "status_cell": _status(r)}
        # runs with different batch sizes (merged reports): say the batch in the cell
        if lat is None and r.get("p50_ms") is not None:
            cell["p50_ms"] = f"{r['p50_ms']:.3f} (b{r.get('latency_batch')})"
        if thr is None and r.get("throughput") is not None:
            cell["throughput"] = f"{r['throughput']:.1f} (b{r.get('throughput_batch')})"
        cells.append(cell)
    return cells


def text_table(report: dict[str, Any]) -> str:
    """The table printed on the terminal, with a line on what the speedups are relative to."""
    table = render(_cells(report), columns(report))
    notes = [_note(run) for run in report["runs"]]
    from modelport.bench.speed_verdict import fastest_line

    best = fastest_line(report.get("fastest") or {})
    return table + "".join(f"\n({n})" for n in notes if n) + (f"\n{best}" if best else "")


def _note(run: dict[str, Any]) -> str:
    settings = run.get("settings") or {}
    how = (f"{settings['iters']} iters" if settings.get("iters")
           else f"{settings.get('duration')} s") + f" per batch size, warmup {settings.get('warmup')}"
    ref = run.get("reference")
    base = f"speedups vs {ref} measured in the same run" if ref else "no reference on this machine"
    fp = run.get("fingerprint") or {}
    return f"{run['machine']}: {fp.get('cpu', '?')}, {fp.get('logical_cores', '?')} cores; {how}; {base}"


def markdown_report(report: dict[str, Any]) -> str:
    model = report["model"]
    lines = [f"# modelport bench: {model.get('name')}", ""]
    lines.append(render_markdown(_cells(report), columns(report)))
    lines.append("")
    if len(report["runs"]) > 1:
        lines += ["## p50 latency (ms) per machine", "", pivot_markdown(report), ""]
    lines += ["## Runs", ""]
    for run in report["runs"]:
        fp = run.get("fingerprint") or {}
        versions = ", ".join(f"{k} {v}" for k, v in (fp.get("versions") or {}).items())
        data = run.get("fidelity_data") or {}
        lines += [
            (f"- **{run['machine']}** ({run['created_at']}, from {run['source']}): {fp.get('cpu')}, "
            f"{fp.get('logical_cores')} logical cores, CPU kind {fp.get('cpu_kind', '?')}, flags "
            f"{', '.join(fp.get('cpu_flags') or [])}; "
            f"{fp.get('os')}, Python {fp.get('python')}"),
            f"  - versions: {versions}",
            f"  - settings: {_settings_text(run.get('settings') or {})}",
            (f"  - fidelity on: {data.get('source', '-')} ({data.get('samples', '?')} samples) vs "
            f"{data.get('reference') or run.get('reference') or 'the stored reference'}"),
        ]
    if report.get("plot"):
        lines += ["", f"![latency vs fidelity]({report['plot']['file']})"]
    return "\n".join(lines) + "\n"


def _settings_text(s: dict[str, Any]) -> str:
    mode = f"{s['iters']} iterations" if s.get("iters") else f"{s.get('duration')} s"
    return (f"batch sizes {s.get('batch_sizes')}, warmup {s.get('warmup')}, {mode} per batch size "
            f"(min {s.get('min_iters')}), {s.get('rotate')} rotating input batches, "
            f"threads {s.get('threads') or 'runtime default'}")


def pivot_markdown(report: dict[str, Any]) -> str:
    """target x machine: p50 latency at the latency batch, one column per machine."""
    machines = [run["machine"] for run in report["runs"]]
    by_target: dict[str, dict[str, Any]] = {}
    for row in report["rows"]:
        by_target.setdefault(row["target"], {"target": row["target"]})[row["machine"]] = \
            row.get("p50_ms")
    cols: list[Column] = [("target", "target", str)]
    cols += [(m, m, fmt_num(3)) for m in machines]
    return render_markdown(list(by_target.values()), cols)
