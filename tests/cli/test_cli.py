"""The CLI as a user types it: commands work, bad input gives one line and exit code 2."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


def _one_line_error(proc):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_unknown_builtin_suggests_the_closest(tmp_path):
    line = _one_line_error(run_cli("export", "builtin:minlm", "--target", "onnxruntime:cpu:fp32",
                                   "--out", str(tmp_path / "o")))
    assert "unknown built-in model 'minlm'" in line and "builtin:minilm" in line
    assert not (tmp_path / "o").exists()


def test_missing_model_file(tmp_path):
    line = _one_line_error(run_cli("export", str(tmp_path / "nope.onnx"), "--target",
                                   "onnxruntime:cpu:fp32", "--out", str(tmp_path / "o")))
    assert "not found" in line and "builtin:NAME" in line


def test_wrong_target_suggests_the_closest(tmp_path):
    line = _one_line_error(run_cli("export", "builtin:digits-cnn", "--target",
                                   "onnxruntime:cpu:int9", "--out", str(tmp_path / "o")))
    assert "unknown target 'onnxruntime:cpu:int9'" in line
    assert "did you mean 'onnxruntime:cpu:int8'" in line


def test_bad_batch_list_and_missing_bundle(tmp_path):
    line = _one_line_error(run_cli("bench", str(tmp_path), "--batch", "1,x"))
    assert "--batch takes comma-separated integers" in line
    line = _one_line_error(run_cli("verify", str(tmp_path / "nope")))
    assert "is not a bundle directory" in line


def test_targets_lists_every_target_with_availability():
    proc = run_cli("targets", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["target"]: r for r in json.loads(proc.stdout)}
    assert rows["onnxruntime:cpu:int8"]["available"] == "yes"
    assert rows["torch:cpu:fp32"]["available"] == "yes"
    for row in rows.values():
        assert row["available"] in ("yes", "no", "build only") and row["why"]


def test_bench_verify_run_on_a_bundle(digits_bundles, tmp_path):
    bundle = str(digits_bundles.bundles["onnxruntime:cpu:int8"])
    out = tmp_path / "bench.json"
    proc = run_cli("--quiet", "bench", bundle, "--batch", "1,8", "--iters", "7", "--threads", "1",
                   "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "p99 ms" in proc.stdout
    result = json.loads(out.read_text())["result"]
    assert [s["batch"] for s in result["stats"]] == [1, 8]
    for stats in result["stats"]:
        assert stats["iters"] == 7
        assert 0 < stats["min_ms"] <= stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
    assert result["fingerprint"]["versions"]["onnxruntime"]

    proc = run_cli("verify", bundle)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK onnxruntime:cpu:int8")

    import numpy as np

    feed = tmp_path / "feed.npz"
    np.savez(feed, image=np.zeros((1, 1, 8, 8), np.float32))
    proc = run_cli("run", bundle, "--input", str(feed))
    assert proc.returncode == 0, proc.stderr
    assert "logits: float32[1, 10]" in proc.stdout


@pytest.fixture(scope="module")
def minilm_fp32_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm-cli")
    proc = run_cli("--quiet", "export", "builtin:minilm", "--target", "onnxruntime:cpu:fp32",
                   "--out", str(out), "--no-bench", "--json", str(out / "rows.json"))
    assert proc.returncode == 0, proc.stderr
    return out / "onnxruntime-cpu-fp32", proc


def test_export_prints_the_table_and_run_text_prints_embeddings(minilm_fp32_bundle):
    bundle, export_proc = minilm_fp32_bundle
    assert "torch:cpu:fp32" in export_proc.stdout and "onnxruntime:cpu:fp32" in export_proc.stdout
    assert "cos 1.0000" in export_proc.stdout
    proc = run_cli("run", str(bundle), "--text", "A cat sits on the mat.", "--text", "Hello world")
    assert proc.returncode == 0, proc.stderr
    assert "sentence_embedding: float32[2, 384]" in proc.stdout
