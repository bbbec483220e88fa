"""The device install: `pip install "modelport[onnxruntime]"` alone benchmarks an ORT bundle.

A fresh venv (no torch, no converters) installs this checkout with only the onnxruntime extra
(versions pinned by constraints.txt, so pip's cache usually serves it), then runs
`python -m modelport.bench BUNDLE` and must write the same report JSON as the build machine.
Needs PyPI (or a warm pip cache) for the runtime wheels.
"""

from __future__ import annotations

import json
import subprocess

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.onnxruntime]


def test_minimal_install_benchmarks_an_ort_bundle_without_torch(digits_bundles, tmp_path,
                                                               runtime_only_python):
    py = runtime_only_python
    bundle = str(digits_bundles.bundles["onnxruntime:cpu:int8"])
    out = tmp_path / "device.json"
    bench = subprocess.run(
        [str(py), "-m", "modelport.bench", bundle, "--iters", "3", "--batch", "1,4",
         "--json", str(out), "--label", "device", "--quiet"],
        check=False, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert bench.returncode == 0, bench.stderr
    assert "onnxruntime:cpu:int8" in bench.stdout and "p99 ms" in bench.stdout

    # torch is neither installed nor needed there
    probe = subprocess.run(
        [str(py), "-c", ("import importlib.util as u, json; print(json.dumps("
         "[u.find_spec(m) is None for m in ('torch', 'onnxscript', 'openvino', 'matplotlib')]))")],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert json.loads(probe.stdout) == [True, True, True, True], probe.stderr

    # the same report JSON as anywhere else: valid against the schema, mergeable
    jsonschema = pytest.importorskip("jsonschema")
    from modelport.bench.report_doc import merge_reports, schema

    report = json.loads(out.read_text())
    jsonschema.Draft202012Validator(schema()).validate(report)
    assert "torch" not in report["runs"][0]["fingerprint"]["versions"]
    row = report["rows"][0]
    assert row["target"] == "onnxruntime:cpu:int8" and row["status"] == "ok"
    assert [s["batch"] for s in row["stats"]] == [1, 4]
    assert row["fidelity"]["top1_agreement"] >= 0.95  # stored samples vs stored torch outputs
    merged = merge_reports([report, report])
    assert [r["machine"] for r in merged["runs"]] == ["device", "device#2"]
