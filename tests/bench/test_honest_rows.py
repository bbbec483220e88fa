"""Honest rows: a target below its budget is measured but kept away from the bundles ready to
ship (and `verify` says so); peak memory is per target; a runtime's own failure is not blamed
on the user's input."""

from __future__ import annotations

import json

import numpy as np
import pytest

import modelport
from modelport.bench import statuses
from modelport.bench.memory import peak_rss_mb, reset_peak
from modelport.errors import InputError, RuntimeFailure
from tests.conftest import run_cli
from tests.support.catalog_support import write_feeds, write_mlp_factory

FP32, INT8 = "onnxruntime:cpu:fp32", "onnxruntime:cpu:int8"


@pytest.fixture(scope="module")
def mlp_report(tmp_path_factory):
    """bench MODEL with a budget INT8 cannot keep: (report dir, report, CLI result)."""
    root = tmp_path_factory.mktemp("below")
    mlp = write_mlp_factory(root / "mlp.py")
    calib = write_feeds(root / "calib", 40, seed=1)
    evals = write_feeds(root / "eval", 16, seed=2)
    report_dir = root / "report"
    proc = run_cli("-q", "bench", f"{mlp}:make", "--targets", f"{FP32},{INT8}", "--calib",
                   str(calib), "--eval", str(evals), "--min-cosine", "0.99999999",
                   # no float fallback: it would keep the whole MLP float to meet this budget
                   "--onnxruntime-max-fallback", "0", "--iters", "3",
                   "--warmup", "1", "--batch", "1", "--no-plot", "--report", str(report_dir))
    report = json.loads((report_dir / "report.json").read_text()) if proc.returncode == 0 else None
    return report_dir, report, proc


@pytest.mark.onnxruntime
def test_below_budget_bundle_is_kept_apart_and_verify_refuses_it(mlp_report):
    report_dir, report, proc = mlp_report
    assert proc.returncode == 0, proc.stderr
    rows = {r["target"]: r for r in report["rows"]}
    assert rows[INT8]["status"] == statuses.BELOW_BUDGET
    assert "misses its accuracy budget" in rows[INT8]["reason"]
    assert rows[FP32]["status"] == statuses.OK
    assert {r["status"] for r in report["rows"]} <= set(statuses.STATUSES)
    shipped = report_dir / "bundles"
    assert (shipped / "onnxruntime-cpu-fp32" / "manifest.json").is_file()
    assert not (shipped / "onnxruntime-cpu-int8").exists()
    below = report_dir / "below-budget" / "onnxruntime-cpu-int8"
    assert (below / "manifest.json").is_file()
    verdict = run_cli("verify", str(below))
    assert verdict.returncode == 2, verdict.stdout + verdict.stderr
    assert "below its accuracy budget" in verdict.stderr and "Traceback" not in verdict.stderr
    assert run_cli("verify", str(shipped / "onnxruntime-cpu-fp32")).returncode == 0


@pytest.mark.onnxruntime
def test_peak_memory_is_measured_per_target(mlp_report):
    _, report, proc = mlp_report
    assert proc.returncode == 0, proc.stderr
    for row in report["rows"]:
        if row["status"] in (statuses.OK, statuses.BELOW_BUDGET, statuses.REFERENCE):
            assert row["peak_rss_mb"] is None or row["peak_rss_mb"] > 0


def test_reset_peak_starts_a_new_window():
    if not reset_peak():
        pytest.skip("this OS cannot reset the peak RSS (/proc/self/clear_refs)")
    big = np.ones(400 * 2**20 // 8)  # 400 MB, touched
    high, scope = peak_rss_mb()
    del big
    assert reset_peak()
    low, _ = peak_rss_mb()
    assert scope == "window" and high - low > 300, (high, low)


@pytest.mark.onnxruntime
def test_runtime_failure_is_not_blamed_on_the_input(tmp_path):
    mlp = write_mlp_factory(tmp_path / "mlp.py")
    bundle = modelport.export(f"{mlp}:make", [FP32], out=tmp_path / "b", bench=None,
                              progress=False).bundles[FP32]
    session = modelport.load(bundle)
    feeds, _ = session.bundle.samples()
    one = {k: v[:1] for k, v in feeds.items()}
    session.infer(one)  # fine
    with pytest.raises(InputError, match="must be float32"):
        session.infer({k: v.astype(np.float64) for k, v in one.items()})
    session.close()  # the runtime is gone: using it now is not the caller's input at fault
    with pytest.raises(RuntimeFailure, match="failure of the runtime, not of the input") as info:
        session.infer(one)
    assert info.value.exit_code == 1
