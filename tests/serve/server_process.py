"""`modelport serve` in a subprocess for tests: started on loopback with ``--port 0`` (the
server picks a free port and prints it), always stopped (SIGTERM, then kill) on exit."""

from __future__ import annotations

import http.client
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Self

START_TIMEOUT = 180  # a loaded 2-core CI machine imports the runtimes slowly


class ServerProcess:
    def __init__(self, bundles: list[str], *flags: str) -> None:
        self.args = [sys.executable, "-m", "modelport.cli", "-q", "serve", *bundles,
                     "--port", "0", *flags]
        self.popen: subprocess.Popen | None = None
        self.first_line = ""
        self.host, self.port = "", 0
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - read after the process ends

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.popen = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self._stderr,
                                      text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        try:
            line = lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            self.stop()
            raise AssertionError(f"serve did not start in {START_TIMEOUT} s: "
                                 f"{self.stderr_text()}") from None
        match = re.search(r"on http://([^:]+):(\d+)$", line.strip())
        if not match:
            self.stop()
            raise AssertionError(f"serve printed {line!r}, not its address: "
                                 f"{self.stderr_text()}")
        self.first_line = line.strip()
        self.host, self.port = match.group(1), int(match.group(2))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _pump(self, lines: queue.Queue[str]) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        for line in self.popen.stdout:
            lines.put(line)
        lines.put("")  # the process ended

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=30)

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]

    # -- talking to it -------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            reply = conn.getresponse()
            return reply.status, reply.read()
        finally:
            conn.close()

    def metrics(self) -> str:
        status, body = self.request("GET", "/metrics")
        assert status == 200
        return body.decode()

    def wait_for_metric(self, name: str, value: float, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if metric(self.metrics(), name) >= value:
                return
            time.sleep(0.05)
        raise AssertionError(f"{name} did not reach {value} in {timeout} s")


def metric(text: str, name: str, model: str | None = None, **labels: str) -> float:
    """The value of one Prometheus sample (0.0 when absent)."""
    want = dict(labels, **({"model": model} if model else {}))
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in want.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
