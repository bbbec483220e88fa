"""`modelport bench MODEL --targets cpu --report DIR`, `bench BUNDLES`, and `report merge`.

Real models, every CPU target installed here, real runtimes; short benchmark settings
(--iters 3; --warmup 1 where the torch reference is slow) because these tests check what is
measured and written, never how fast.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from modelport import registry
from modelport.bench.plot import read_png_points
from modelport.bench.report_doc import schema
from modelport.specs import Target
from tests.conftest import run_cli

jsonschema = pytest.importorskip("jsonschema")


def _validate(report: dict) -> None:
    jsonschema.Draft202012Validator(schema()).validate(report)


def _cpu_targets() -> list[str]:
    return [n for n in registry.all_target_names() if Target.parse(n).device == "cpu"]


def _check_report(out, *, model: str, iters: int, batches: list[int],
                  every_cpu_target: bool = True) -> dict:
    report = json.loads((out / "report.json").read_text())
    _validate(report)
    assert report["model"]["name"] == model
    rows = {r["target"]: r for r in report["rows"]}
    ref = report["rows"][0]
    assert ref["reference"] and ref["status"] == "reference" and ref["target"] == "torch:cpu:fp32"
    assert ref["speedup_latency"] == pytest.approx(1.0)
    # every registered CPU target is a row: measured, or unavailable with the reason
    if every_cpu_target:
        assert set(_cpu_targets()) <= set(rows)
    measured = [r for r in report["rows"] if r["p50_ms"] is not None]
    assert "onnxruntime:cpu:fp32" in {r["target"] for r in measured}
    for row in report["rows"]:
        if not row["available"] or row["status"] == "failed":
            assert row["reason"], row
            continue
        if row["status"] == "built, not run here":
            continue
        assert row["fidelity"]["samples"] > 0
        got = [s["batch"] for s in row["stats"]]
        # a static-shape artifact (e.g. TFLite) runs only its own batch size
        assert got == batches or (len(got) == 1 and got[0] in batches), row["target"]
        assert all(s["iters"] == iters for s in row["stats"])
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        if row["latency_batch"] == ref["latency_batch"]:
            assert row["speedup_latency"] == pytest.approx(ref["p50_ms"] / row["p50_ms"])
    # FP32 ONNX Runtime computes what torch computes
    assert rows["onnxruntime:cpu:fp32"]["fidelity"]["cosine_min"] > 0.9999
    # the table names every target; the plot has one point per measured target
    md = (out / "report.md").read_text()
    assert "| target |" in md and "speedup lat" in md
    for target in rows:
        assert target in md
    png = out / "pareto.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    points = read_png_points(png)
    assert sorted(p["target"] for p in points) == sorted(r["target"] for r in measured)
    assert len(report["plot"]["points"]) == len(measured)
    assert any(p["on_front"] for p in report["plot"]["points"])
    return report


@pytest.fixture(scope="module")
def digits_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "digits"
    proc = run_cli("--quiet", "bench", "builtin:digits-cnn", "--targets", "cpu", "--iters", "3",
                   "--batch", "1,4", "--report", str(out), "--label", "build-box")
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_digits_report_json_table_plot(digits_report):
    out, proc = digits_report
    report = _check_report(out, model="digits-cnn", iters=3, batches=[1, 4])
    assert report["runs"][0]["machine"] == "build-box"
    assert report["runs"][0]["fingerprint"]["versions"]["onnxruntime"]
    assert report["plot"]["fidelity_metric"] == "accuracy"  # digits has labels
    assert "speedups vs torch:cpu:fp32 measured in the same run" in proc.stdout
    # bundles of the measured targets are there for the device
    assert (out / "bundles" / "onnxruntime-cpu-int8" / "manifest.json").is_file()


@pytest.mark.slow
def test_minilm_report(tmp_path):
    # the ONNX Runtime targets only: every CPU target on MiniLM took 21 min on the shared
    # 2-core machine (TFLite conversion dominates); digits-cnn above covers them all
    out = tmp_path / "minilm"
    proc = run_cli("--quiet", "bench", "builtin:minilm", "--targets",
                   "onnxruntime:cpu:fp32,onnxruntime:cpu:int8", "--iters", "3",
                   "--warmup", "1", "--batch", "1", "--report", str(out))
    assert proc.returncode == 0, proc.stderr
    report = _check_report(out, model="minilm", iters=3, batches=[1], every_cpu_target=False)
    assert report["plot"]["fidelity_metric"] == "cosine_mean"
    assert [r["target"] for r in report["rows"]] == [
        "torch:cpu:fp32", "onnxruntime:cpu:fp32", "onnxruntime:cpu:int8"]
    assert report["rows"][2]["fidelity"]["cosine_mean"] > 0.98  # dynamic INT8 keeps MiniLM


def test_device_report_from_bundles_and_merge(digits_report, tmp_path):
    out, _ = digits_report
    dev = tmp_path / "device"
    proc = run_cli("--quiet", "bench", str(out / "bundles"), "--iters", "3", "--report", str(dev),
                   "--label", "edge-box")
    assert proc.returncode == 0, proc.stderr
    device = json.loads((dev / "report.json").read_text())
    _validate(device)
    assert device["runs"][0]["source"] == "bundles" and device["runs"][0]["reference"] is None
    targets = {r["target"] for r in device["rows"]}
    assert "onnxruntime:cpu:int8" in targets and "torch:cpu:fp32" not in targets
    for row in device["rows"]:
        if row["status"] == "ok":  # stored samples vs the stored torch reference
            assert row["fidelity"]["top1_agreement"] >= 0.95
            assert row["stats"][0]["iters"] == 3

    merged_dir = tmp_path / "merged"
    proc = run_cli("--quiet", "report", "merge", str(out / "report.json"), str(dev),
                   "--out", str(merged_dir))
    assert proc.returncode == 0, proc.stderr
    merged = json.loads((merged_dir / "report.json").read_text())
    _validate(merged)
    assert [r["machine"] for r in merged["runs"]] == ["build-box", "edge-box"]
    build = json.loads((out / "report.json").read_text())
    assert len(merged["rows"]) == len(build["rows"]) + len(device["rows"])
    md = (merged_dir / "report.md").read_text()
    assert "| machine |" in md and "## p50 latency (ms) per machine" in md
    assert "| target | build-box | edge-box |" in md
    assert len(read_png_points(merged_dir / "pareto.png")) == len(merged["plot"]["points"])


def test_bundle_bench_prints_json_and_imports_no_torch(digits_bundles, tmp_path):
    bundle = str(digits_bundles.bundles["onnxruntime:cpu:fp32"])
    code = ("import sys; from modelport.cli import main; "
            f"rc = main(['--quiet', 'bench', {bundle!r}, '--iters', '3', '--json']); "
            "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    _validate(report)
    assert report["rows"][0]["stats"][0]["iters"] == 3
    assert report["result"]["stats"][0]["iters"] == 3


def test_unavailable_and_broken_backends_are_rows_with_reasons(monkeypatch):
    from modelport.bench.matrix import split_available

    entry = registry.BackendEntry("nosuchrt", "modelport.runtimes.nosuchrt:Backend",
                                  ("cpu:fp32",), "a backend whose module is missing")
    monkeypatch.setitem(registry.BACKENDS, "nosuchrt", entry)
    build, skipped = split_available(
        [Target.parse("onnxruntime:cpu:fp32"), Target.parse("nosuchrt:cpu:fp32"),
         Target.parse("torch:cpu:fp32")], reference_is_torch=True)
    assert [str(t) for t in build] == ["onnxruntime:cpu:fp32"]  # torch fp32 is the reference row
    assert skipped[0]["target"] == "nosuchrt:cpu:fp32" and skipped[0]["status"] == "unavailable"
    assert "failed to import" in skipped[0]["reason"]


def test_expand_targets_all_device_list_and_typo():
    from modelport.bench.matrix import expand_targets
    from modelport.errors import UnknownTarget

    assert [str(t) for t in expand_targets("all")] == registry.all_target_names()
    assert [str(t) for t in expand_targets("cpu")] == _cpu_targets()
    assert [str(t) for t in expand_targets("onnxruntime:cpu:int8,onnxruntime:cpu:fp32")] == [
        "onnxruntime:cpu:int8", "onnxruntime:cpu:fp32"]
    with pytest.raises(UnknownTarget, match="did you mean"):
        expand_targets("onnxruntime:cpu:int9")


def test_schema_rejects_a_report_missing_numbers(digits_report):
    out, _ = digits_report
    report = json.loads((out / "report.json").read_text())
    del report["rows"][0]["p50_ms"]
    with pytest.raises(jsonschema.ValidationError):
        _validate(report)
    report = json.loads((out / "report.json").read_text())
    report["runs"][0]["settings"]["batch_sizes"] = []
    with pytest.raises(jsonschema.ValidationError):
        _validate(report)


def test_merge_refuses_other_files_and_other_models(digits_report, tmp_path):
    out, _ = digits_report
    bogus = tmp_path / "x.json"
    bogus.write_text(json.dumps({"rows": []}))
    proc = run_cli("report", "merge", str(bogus), "--out", str(tmp_path / "m"))
    assert proc.returncode == 2 and "is not a modelport bench report" in proc.stderr
    other = json.loads((out / "report.json").read_text())
    other["model"]["name"] = "another-model"
    (tmp_path / "other.json").write_text(json.dumps(other))
    proc = run_cli("report", "merge", str(out), str(tmp_path / "other.json"),
                   "--out", str(tmp_path / "m"))
    assert proc.returncode == 2 and "different models" in proc.stderr
    assert not (tmp_path / "m").exists()
