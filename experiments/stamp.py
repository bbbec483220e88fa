"""The line every published number carries: the command, the commit and the machine."""

from __future__ import annotations

import datetime as dt
import shlex
import subprocess
import sys
from pathlib import Path

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
