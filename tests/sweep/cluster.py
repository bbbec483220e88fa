"""A real Ray cluster on loopback only, inside a private network namespace (tests only).

Ray binds the machine's interface address even when told 127.0.0.1 (../shared/FINDINGS.md), so
the cluster lives in ``unshare --net`` where loopback is the only address: nothing leaves the
machine and no port clashes with anyone else's Ray. Every process of the cluster is found by
its network namespace and ended by its PID: never ``ray stop``, which kills Ray processes
machine-wide by name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
HEAD_PORT = 6379
ADDRESS = f"127.0.0.1:{HEAD_PORT}"
#: tiny object stores (Ray's minimum is ~75 MB); the digits bundles are kilobytes
OBJECT_STORE = 100_000_000


def can_run() -> str | None:
    """None when a namespaced cluster can start here, else the reason to skip."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return 'ray not installed (pip install "modelport[ray]")'
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"'{tool}' not found: the test cluster needs a private network namespace"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        return f"unshare --net is not allowed here: {probe.stderr.decode().strip()}"
    return None


class LoopbackCluster:
    """Head + worker nodes, each offering its own ``device:NAME`` resource."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="mpray-"))  # short: Ray's socket paths
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
                    # a killed node is declared dead in ~1 s, not the default ~15 s
                    "RAY_health_check_period_ms": "200", "RAY_health_check_timeout_ms": "500",
                    "RAY_health_check_failure_threshold": "3", **(env or {})}
        self.holder = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep 86400"],
            stdout=subprocess.PIPE, text=True)
        if self.holder.stdout.readline().strip() != "up":
            raise RuntimeError("could not bring loopback up in a new network namespace")
        self.netns = os.readlink(f"/proc/{self.holder.pid}/ns/net")

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the cluster's network namespace."""
        return ["nsenter", "-t", str(self.holder.pid), "-n", *argv]

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(argv), env={**self.env, **kwargs.pop("env", {})},
                                **kwargs)

    def run(self, argv: list[str], timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(argv), env={**self.env, **kwargs.pop("env", {})},
                              capture_output=True, text=True, timeout=timeout, check=False,
                              **kwargs)

    def start_head(self, device: str, *, cpus: int = 2) -> None:
        self._wait([self._ray_start(device, cpus, ["--head", f"--port={HEAD_PORT}",
                                                    "--include-dashboard=false",
                                                    f"--temp-dir={self.temp}"])])

    def start_nodes(self, *devices: str, cpus: int = 2) -> None:
        """Worker nodes, one after the other (raylets of one IP started together time out)."""
        for device in devices:
            self._wait([self._ray_start(device, cpus, [f"--address={ADDRESS}"])])

    def _ray_start(self, device: str, cpus: int, extra: list[str]) -> subprocess.Popen:
        argv = [str(BIN / "ray"), "start", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
                f"--resources={json.dumps({f'device:{device}': 1})}",
                f"--object-store-memory={OBJECT_STORE}", "--disable-usage-stats", *extra]
        return self.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    @staticmethod
    def _wait(procs: list[subprocess.Popen]) -> None:
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"ray start failed:\n{out[-3000:]}")

    def kill_node(self, device: str) -> None:
        """SIGKILL one node's raylet and everything it spawned (a machine that vanished)."""
        tag = re.compile(rf"device:{re.escape(device)}(?![\w.-])")  # not device:gamma2
        raylets = {pid for pid in self.pids()
                   if tag.search(_cmdline(pid)) and _cmdline(pid).split(" ", 1)[0]
                   .endswith("/raylet")}
        if not raylets:
            raise RuntimeError(f"no raylet offers device:{device}")
        for pid in self._descendants(raylets):
            _kill(pid)

    def stop(self) -> None:
        """End every process in the namespace by PID, then the namespace itself."""
        for _ in range(3):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                _kill(pid)
            time.sleep(0.2)
        self.holder.kill()
        self.holder.wait(timeout=10)
        shutil.rmtree(self.temp, ignore_errors=True)

    def pids(self) -> set[int]:
        """Processes in the cluster's namespace, the holder excluded."""
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == self.holder.pid:
                continue
            try:
                if os.readlink(entry / "ns" / "net") == self.netns:
                    found.add(int(entry.name))
            except OSError:
                continue
        return found

    def _descendants(self, roots: set[int]) -> set[int]:
        parents: dict[int, int] = {}
        for pid in self.pids():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            parents[pid] = int(stat.rpartition(")")[2].split()[1])
        found = set(roots)
        grew = True
        while grew:
            grew = False
            for pid, parent in parents.items():
                if parent in found and pid not in found:
                    found.add(pid)
                    grew = True
        return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
