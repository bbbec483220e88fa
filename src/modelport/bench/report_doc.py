"""The bench report document: one JSON shape for a model matrix, a device run and a merge.

``report.json`` holds every number (per-batch latency stats, fidelity, sizes, build/load times),
the machine fingerprint and the runtime versions of each run. A report made on the build
machine (``modelport bench MODEL``), one made on a device from bundles alone
(``modelport bench BUNDLE``) and a merge of several (``modelport report merge``) all follow
``report.schema.json``, so they can be folded together and plotted the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelport.errors import UsageError

KIND = "modelport-bench-report"
REPORT_SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("report.schema.json")

#: row fields, in table order; missing ones are written as null so every row has the same keys
ROW_FIELDS = (
    "machine", "target", "precision", "reference", "status", "available", "reason", "size_mb",
    "fidelity", "fidelity_on", "p50_ms", "p90_ms", "p99_ms", "latency_batch", "throughput",
    "throughput_batch", "speedup_latency", "speedup_throughput", "load_s", "build_s",
    "peak_rss_mb", "stats", "bundle",
    # language models (null for other rows); optional in the schema, so older reports still load
    "ttft_ms", "decode_ms_p50", "decode_ms_p99", "tokens_per_s", "perplexity",
    "encoder_ms",  # encoder-decoders (bench.lm_harness.benchmark_seq2seq)
)


def schema() -> dict[str, Any]:
    """The JSON Schema every report.json follows (shipped with the package)."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def machine_label(label: str | None = None) -> str:
    """How a machine is named in tables: ``--label`` or the host name."""
    return label or platform.node() or platform.machine() or "this-machine"


def new_report(
    *,
    model: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    settings: dict[str, Any],
    source: str,
    reference: str | None,
    fidelity_data: dict[str, Any] | None,
    label: str | None = None,
) -> dict[str, Any]:
    """A single-run report: one machine, its fingerprint and settings, one row per target."""
    from modelport._version import __version__
    from modelport.bench.fingerprint import fingerprint

    machine = machine_label(label)
    now = _now()
    run = {"machine": machine, "created_at": now, "source": source, "reference": reference,
           "settings": _jsonable(settings), "fidelity_data": fidelity_data,
           "fingerprint": fingerprint()}
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": KIND,
        "modelport_version": __version__,
        "created_at": now,
        "model": {k: model.get(k) for k in ("name", "source", "task")},
        "runs": [run],
        "rows": [normalize_row(r, machine) for r in rows],
        "plot": None,
    }


def normalize_row(row: dict[str, Any], machine: str) -> dict[str, Any]:
    """Every field of ROW_FIELDS present (null when not measured), nothing else."""
    out = {key: row.get(key) for key in ROW_FIELDS}
    out["machine"] = machine
    out["reference"] = bool(row.get("reference", False))
    status = str(row.get("status") or ("reference" if out["reference"] else "ok"))
    out["available"] = bool(row.get("available", not status.startswith(("unavailable",
                                                                         "failed"))))
    out["status"] = status
    out["stats"] = list(row.get("stats") or [])
    for key in ("speed_verdict", "added_for_comparison", "search"):  # optional: rows with them
        if row.get(key) is not None:
            out[key] = row[key]
    return _jsonable(out)


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report.json (the file, or a directory holding one) and check its shape."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise UsageError(f"'{path}' not found: give a report.json written by 'modelport bench'")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None
    check_report(data, where=str(path))
    return data


def check_report(data: Any, *, where: str = "report") -> None:
    """The structural checks merge relies on (the shipped JSON Schema documents every field)."""
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise UsageError(f"{where} is not a modelport bench report (no kind '{KIND}')")
    version = data.get("schema_version")
    if not isinstance(version, int) or version > REPORT_SCHEMA_VERSION:
        raise UsageError(f"{where}: report schema_version {version!r} is not one this modelport "
                         f"reads ({REPORT_SCHEMA_VERSION}): upgrade modelport")
    for key in ("runs", "rows"):
        if not isinstance(data.get(key), list):
            raise UsageError(f"{where}: missing or invalid '{key}'")
    for row in data["rows"]:
        if not isinstance(row, dict) or not isinstance(row.get("target"), str) \
                or not isinstance(row.get("machine"), str):
            raise UsageError(f"{where}: a row lacks 'target' or 'machine'")


def merge_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Fold several machines' reports into one; machine labels are made unique."""
    from modelport._version import __version__

    if not reports:
        raise UsageError("give at least one report.json to merge")
    names = {r["model"].get("name") for r in reports}
    if len(names) > 1:
        raise UsageError(f"these reports are for different models ({', '.join(sorted(map(str, names)))}):"
                         " merge reports of one model")
    runs: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    used: set[str] = set()
    for report in reports:
        renamed: dict[str, str] = {}
        for run in report["runs"]:
            label, n = run["machine"], 2
            while label in used:
                label, n = f"{run['machine']}#{n}", n + 1
            used.add(label)
            renamed[run["machine"]] = label
            runs.append({**run, "machine": label})
        for row in report["rows"]:
            rows.append({**row, "machine": renamed.get(row["machine"], row["machine"])})
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": KIND,
        "modelport_version": __version__,
        "created_at": _now(),
        "model": reports[0]["model"],
        "runs": runs,
        "rows": rows,
        "plot": None,
    }


def write_report(report: dict[str, Any], out: str | Path, *, plot: bool = True) -> dict[str, Path]:
    """Write report.md, pareto.png (when matplotlib is installed) and report.json into ``out``.

    The plot is drawn first so report.json can record the points it shows.
    """
    from modelport.bench.report_tables import markdown_report
    from modelport.io import write_json_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if plot:
        from modelport.bench.plot import plot_available, plot_pareto

        if plot_available():
            png = out / "pareto.png"
            points, metric = plot_pareto(report, png)
            report["plot"] = {"file": png.name, "fidelity_metric": metric, "points": points}
            written["png"] = png
        else:
            report["plot"] = None
    md = out / "report.md"
    _write_text_atomic(md, markdown_report(report))
    written["md"] = md
    path = out / "report.json"
    write_json_atomic(path, report)
    written["json"] = path
    return written


def _write_text_atomic(path: Path, text: str) -> None:
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    """Tuples to lists, numpy scalars to floats, paths to strings: plain JSON all the way."""
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
