"""`modelport bench BUNDLE --serve local`: the load of bench/serve_load.py on `modelport serve`
started here twice, without dynamic batching (``--max-batch 1``) and with it, one table.

Each server is a child on a free loopback port (``--port 0``), stopped (SIGTERM, then kill)
when its levels are done, also on failure or Ctrl-C.
"""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Self

from modelport.errors import UsageError

START_TIMEOUT = 300  # a loaded machine imports the runtimes slowly


class LocalServer:
    """``modelport serve BUNDLE --port 0 --max-batch N`` on loopback, as a context manager."""

    def __init__(self, bundle: str | Path, max_batch: int, delay_ms: float = 0.0) -> None:
        self.argv = [sys.executable, "-m", "modelport.cli", "-q", "serve", str(bundle),
                     "--port", "0", "--max-batch", str(max_batch),
                     "--max-batch-delay-ms", str(delay_ms)]
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> Self:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in self.proc.stdout],
                         daemon=True).start()
        try:
            line = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            line = ""
        match = re.search(r"on (http://\S+)$", line.strip())
        if not match:
            self.stop()
            err = (self.proc.stderr.read() or "").strip().splitlines()
            raise UsageError(f"`modelport serve` did not start here: "
                             f"{err[-1] if err else 'no output'}")
        self.url = match.group(1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def compare_batching(bundle: str, settings: Any, *, max_batch: int, model: str | None = None,
                     label: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Every level against a local server with batching off, then with ``--max-batch``."""
    from modelport.bench.serve_load import load_test

    if max_batch < 2:
        raise UsageError("--serve local compares --max-batch 1 with --serve-max-batch N: "
                         "give N >= 2")
    report: dict[str, Any] = {}
    rows = []
    for side in (1, max_batch):
        if progress:
            print(f"modelport serve --max-batch {side} ...", flush=True)
        with LocalServer(bundle, side) as server:
            one = load_test(bundle, server.url, settings, model=model, label=label,
                            progress=progress)
        rows += [{**row, "server_max_batch": side} for row in one["rows"]]
        report = report or one
    return {**report, "url": "local (modelport serve --port 0)", "rows": rows}
