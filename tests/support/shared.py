"""One build per test run of a session fixture that several files use, across pytest-xdist's
workers: `make test` sends whole files to its workers (--dist loadfile), and a session fixture
is per worker, so files on three workers each built the same export (the LM exports: four
files each). The first worker to take the lock builds and pickles the value; the others wait
for it and read it back. Without xdist this is the plain build."""

from __future__ import annotations

import fcntl
import os
import pickle
from collections.abc import Callable
from typing import Any


def once_per_run(tmp_path_factory, name: str, build: Callable[[], Any]) -> Any:
    """``build()`` once per run (its value must pickle; the paths in it stay valid: every
    worker's temporary folder lives until the run ends)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build()
    root = tmp_path_factory.getbasetemp().parent / "shared-fixtures"
    root.mkdir(exist_ok=True)
    done = root / f"{name}.pickle"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return pickle.loads(done.read_bytes())
        value = build()
        part = done.with_suffix(".part")
        part.write_bytes(pickle.dumps(value))
        part.rename(done)
        return value
