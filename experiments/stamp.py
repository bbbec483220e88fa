"""The line every published number carries: the command, the commit and the machine; and the
steps every table script shares (quiet logging, one export's rows, writing the table)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """Short commit of the checkout, with '+changes' when the tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> str:
    from modelport.bench.fingerprint import fingerprint

    fp = fingerprint()
    return (f"{fp['cpu']}, {fp['logical_cores']} logical cores, flags "
            f"{', '.join(fp['cpu_flags']) or 'none of the tracked ones'}")


def stamp(argv: list[str] | None = None) -> str:
    """``command`` · commit · machine · date, for the line under a published table."""
    argv = sys.argv if argv is None else argv
    script = Path(argv[0])
    try:
        script = script.resolve().relative_to(ROOT)
    except ValueError:
        pass
    command = "python " + shlex.join([str(script), *argv[1:]])
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    return f"`{command}` · commit {commit()} · {machine()} · {today}"


@contextmanager
def watch_load() -> Iterator[list[float]]:
    """The 1-minute load average before and after the block: ``[before, after]``."""
    loads = [os.getloadavg()[0]]
    try:
        yield loads
    finally:
        loads.append(os.getloadavg()[0])


def publish(out: Path, name: str, table: str, payload: dict[str, Any], loads: list[float],
            facts: Sequence[str] = ()) -> str:
    """Write ``name.json`` (``payload`` + the load averages) and ``name.md`` (the table and its
    stamp line: command, commit, machine, date, ``facts``, load), print both; the line."""
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({**payload, "load_avg": loads}, indent=1,
                                                 default=str))
    load = (f"load average {loads[0]:.1f} before / {loads[-1]:.1f} after (a 2-core machine "
            "shared with other jobs)")
    note = " · ".join([stamp(), *facts, load])
    (out / f"{name}.md").write_text(f"{table}\n\n{note}\n")
    print(table)
    print(note)
    return note


def quiet_logging() -> None:
    """modelport's progress lines on stderr; NNCF's and onnx_ir's chatter off."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("nncf", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.WARNING)


def export_rows(model: str, targets: Sequence[str], out: Path, **kwargs: Any) -> list[dict]:
    """The rows of one ``modelport.export`` call; a target over its budget is still a row."""
    import modelport
    from modelport.errors import AccuracyBudgetExceeded

    try:
        return modelport.export(model, list(targets), out=out, progress=False, **kwargs).rows
    except AccuracyBudgetExceeded as exc:  # the table still shows every row
        return exc.result.rows
