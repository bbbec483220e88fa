"""One real two-node Ray cluster for every sweep test (loopback only, in its own namespace).

Node ``alpha`` is the head (the driver's node, where builds run); ``beta`` and ``gamma`` are
more raylets (``gamma`` is the one a test kills). All are 2-CPU nodes of this one machine, told
apart only by their ``device:NAME`` resources, which is all a sweep looks at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.sweep.cluster import ADDRESS, LoopbackCluster, can_run

#: ORT FP32 is not asked for: the sweep builds it for ORT INT8's speed verdict on each device
TARGETS = "onnxruntime:cpu:int8,openvino:cpu:fp32"
#: tiny timing settings: the tests check what ran where, not how fast
QUICK = ["--iters", "5", "--warmup", "1", "--batch", "1", "--no-plot", "-q"]


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if "ray" in item.keywords:
            reason = reason or can_run() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    cache = os.environ.get("MODELPORT_CACHE") or str(tmp_path_factory.mktemp("cache"))
    c = LoopbackCluster(env={"MODELPORT_CACHE": cache, "TQDM_DISABLE": "1",
                             "PYTHONPATH": str(ROOT / "src")})
    try:
        c.start_head("alpha")
        c.start_nodes("beta", "gamma")  # gamma is the node a test kills
        yield c
    finally:
        c.stop()


def sweep_argv(report: Path, *extra: str, devices: str = "alpha,beta",
               targets: str = TARGETS, events: Path | None = None) -> list[str]:
    argv = [sys.executable, "-m", "modelport.cli", *QUICK[-1:], "sweep", "builtin:digits-cnn",
            "--targets", targets, "--report", str(report), *QUICK[:-1], *extra]
    if devices:
        argv += ["--devices", devices, "--ray", ADDRESS]
    if events is not None:
        argv += ["--events", str(events)]
    return argv


def read_events(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_event(path: Path, proc: subprocess.Popen, match, timeout: float = 180) -> dict:
    """Block until the sweep writes an event ``match`` accepts (or it exits, or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in read_events(path):
            if match(event):
                return event
        if proc.poll() is not None:
            raise AssertionError(f"the sweep exited ({proc.returncode}) before the event")
        time.sleep(0.05)
    raise AssertionError("the event never came")


@pytest.fixture(scope="session")
def digits_sweep(cluster, tmp_path_factory):
    """The full sweep once: digits-cnn on three targets, devices alpha and beta."""
    report = tmp_path_factory.mktemp("sweep") / "report"
    events = report.parent / "events.jsonl"
    done = cluster.run(sweep_argv(report, events=events), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    builds = [e for e in read_events(events) if e["event"] == "build"]
    assert [b["status"] for b in builds] == ["ok"], builds
    return report, events
