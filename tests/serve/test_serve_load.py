"""`modelport bench BUNDLE --serve URL`: the load generator against a real `modelport serve`
on loopback (a free port; the server is stopped by the test even on failure)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.support.catalog_support import assert_user_error, write_tiny_onnx

pytestmark = [pytest.mark.onnxruntime]

ORT = "onnxruntime:cpu:fp32"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    import modelport

    root = tmp_path_factory.mktemp("load-bundle")
    result = modelport.export(str(write_tiny_onnx(root / "tiny.onnx")), [ORT], out=root / "b",
                              bench=None, progress=False)
    return Path(result.bundles[ORT])


@pytest.fixture(scope="module")
def server(bundle):
    """`modelport serve BUNDLE --port 0` (batching up to 8 rows); yields its URL."""
    pytest.importorskip("fastapi")
    proc = subprocess.Popen([sys.executable, "-m", "modelport.cli", "serve", str(bundle),
                             "--port", "0", "--max-batch", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _ready_line(proc)
        yield line.rsplit(" ", 1)[-1]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ready_line(proc: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("serving ") and "http://" in line:
            return line.strip()
        if not line and proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
    raise AssertionError("serve never said it was ready")


def test_levels_report_latency_throughput_and_server_batches(bundle, server, tmp_path):
    out = tmp_path / "load.json"
    done = run_cli("-q", "bench", str(bundle), "--serve", server, "--concurrency", "1,6",
                   "--duration", "1", "--warmup", "2", "--json", str(out), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "clients" in done.stdout and "p99 ms" in done.stdout and "req/s" in done.stdout
    report = json.loads(out.read_text())
    assert report["kind"] == "serve-load" and report["model"] == "tiny-onnxruntime-cpu-fp32"
    assert report["target"] == ORT and report["machine"]["logical_cores"] >= 1
    assert [r["concurrency"] for r in report["rows"]] == [1, 6]
    for row in report["rows"]:
        assert row["requests"] > 0 and row["errors"] == 0, row
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["throughput"] > 0 and row["rows_per_s"] == pytest.approx(row["throughput"])
        # the server's own batch-size histogram, read from /metrics around each level
        assert row["server_mean_batch"] is not None and 1 <= row["server_mean_batch"] <= 8
    assert report["rows"][0]["server_mean_batch"] == pytest.approx(1.0)  # one client: alone


def test_binary_tensors_and_batch_rows(bundle, server):
    done = run_cli("-q", "bench", str(bundle), "--serve", server, "--concurrency", "2",
                   "--duration", "0.5", "--warmup", "1", "--batch", "3", "--binary",
                   "--json", timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(done.stdout)["rows"]
    assert row["errors"] == 0 and row["requests"] > 0
    assert row["rows_per_s"] == pytest.approx(3 * row["throughput"])


def test_local_compares_without_and_with_batching(bundle):
    """`--serve local` starts `modelport serve` here twice (--max-batch 1, then 4), one table."""
    pytest.importorskip("fastapi")
    done = run_cli("-q", "bench", str(bundle), "--serve", "local", "--serve-max-batch", "4",
                   "--concurrency", "4", "--duration", "0.5", "--warmup", "1", "--json",
                   timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)["rows"]
    assert [(r["server_max_batch"], r["concurrency"]) for r in rows] == [(1, 4), (4, 4)]
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in rows)
    assert rows[0]["server_mean_batch"] == pytest.approx(1.0)  # batching off: one per call
    assert 1 <= rows[1]["server_mean_batch"] <= 4


def test_unknown_model_and_no_server_are_one_line_errors(bundle, server):
    done = run_cli("bench", str(bundle), "--serve", server, "--model", "nosuch",
                   "--duration", "1", timeout=120)
    assert_user_error(done, "nosuch", "tiny-onnxruntime-cpu-fp32", "--model")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = run_cli("bench", str(bundle), "--serve", f"http://127.0.0.1:{port}",
                   "--duration", "1", timeout=120)
    assert_user_error(done, "no Open Inference Protocol server", "modelport serve")
    done = run_cli("bench", str(bundle), "--serve", server, "--concurrency", "0", timeout=120)
    assert_user_error(done, "--concurrency")


def test_text_rows_are_sent_at_their_own_length():
    from modelport.bench.serve_load import trim_text
    from modelport.specs import TensorSpec

    specs = [TensorSpec("input_ids", "int64", ("batch", "seq")),
             TensorSpec("attention_mask", "int64", ("batch", "seq")),
             TensorSpec("pixel_values", "float32", ("batch", 8))]
    mask = np.zeros((2, 8), np.int64)
    mask[0, :3], mask[1, :5] = 1, 1
    feed = {"input_ids": np.arange(16).reshape(2, 8), "attention_mask": mask,
            "pixel_values": np.ones((2, 8), np.float32)}
    cut = trim_text(feed, specs)
    assert cut["input_ids"].tolist() == [[0, 1, 2, 3, 4], [8, 9, 10, 11, 12]]  # the longest row
    assert cut["attention_mask"].shape == (2, 5) and cut["pixel_values"].shape == (2, 8)
    static = [TensorSpec("input_ids", "int64", (1, 8)), TensorSpec("attention_mask", "int64", (1, 8))]
    assert trim_text(feed, static) is feed  # a static-shape bundle takes its own length only
