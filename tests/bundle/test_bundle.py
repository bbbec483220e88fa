"""Bundle round trip, tamper detection, refused overwrite, and loading without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.bundle import open_bundle
from modelport.errors import BundleError, BundleExists

SCHEMA = Path(__file__).resolve().parents[2] / "src" / "modelport" / "bundle" / "manifest.schema.json"


@pytest.fixture(scope="module")
def int8_bundle(digits_bundles) -> Path:
    return digits_bundles.bundles["onnxruntime:cpu:int8"]


def test_round_trip_reproduces_stored_reference(int8_bundle):
    session = modelport.load(int8_bundle)
    feeds, refs = session.bundle.samples()
    with session:
        got = session.infer(feeds)
    assert got["logits"].shape == refs["logits"].shape == (len(feeds["image"]), 10)
    agree = (got["logits"].argmax(1) == refs["logits"].argmax(1)).mean()
    assert agree >= 0.97
    report = modelport.verify(int8_bundle)
    assert report["outputs_checked"] and report["metrics"]["cosine_mean"] > 0.999


def test_manifest_matches_its_json_schema(digits_bundles):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    for path in digits_bundles.bundles.values():
        manifest = json.loads((path / "manifest.json").read_text())
        jsonschema.validate(manifest, schema)
        assert set(manifest["files"]) >= {"model.onnx", "samples.npz", "README.md"}
        assert manifest["accuracy"]["passed"] is True
        assert manifest["runtime"]["name"] == "onnxruntime"


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(bundle, dst)
    return dst


def test_modified_artifact_is_refused_naming_the_file(int8_bundle, tmp_path):
    copy = _copy(int8_bundle, tmp_path)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="'model.onnx' was modified"):
        modelport.load(copy)
    with pytest.raises(BundleError, match="'model.onnx' was modified"):
        modelport.verify(copy)


def test_missing_file_and_missing_manifest_are_refused(int8_bundle, tmp_path):
    copy = _copy(int8_bundle, tmp_path)
    (copy / "samples.npz").unlink()
    with pytest.raises(BundleError, match="'samples.npz' is missing"):
        open_bundle(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match="no manifest.json"):
        open_bundle(copy)


def test_manifest_paths_outside_the_bundle_and_future_schema_are_refused(int8_bundle, tmp_path):
    copy = _copy(int8_bundle, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["../escape.onnx"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="points outside the bundle"):
        open_bundle(copy)
    manifest = json.loads((int8_bundle / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="newer than this modelport understands"):
        open_bundle(copy)


def test_existing_bundle_is_not_overwritten_without_force(digits_bundles, digits):
    out = next(iter(digits_bundles.bundles.values())).parent
    before = (out / "onnxruntime-cpu-fp32" / "manifest.json").read_bytes()
    with pytest.raises(BundleExists, match="pass --force"):
        modelport.export(digits, ["onnxruntime:cpu:fp32"], out=out, bench=None, progress=False)
    assert (out / "onnxruntime-cpu-fp32" / "manifest.json").read_bytes() == before


def test_force_replaces_the_bundle_atomically(digits, tmp_path):
    out = tmp_path / "b"
    first = modelport.export(digits, ["onnxruntime:cpu:fp32"], out=out, bench=None, progress=False)
    created = json.loads((first.bundles["onnxruntime:cpu:fp32"] / "manifest.json").read_text())
    modelport.export(digits, ["onnxruntime:cpu:fp32"], out=out, bench=None, progress=False, force=True)
    after = json.loads((out / "onnxruntime-cpu-fp32" / "manifest.json").read_text())
    assert after["files"] and open_bundle(out / "onnxruntime-cpu-fp32")
    assert after["created_at"] >= created["created_at"]
    leftovers = [p.name for p in out.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []


def test_load_and_infer_need_no_torch(int8_bundle):
    code = (
        "import sys, modelport\n"
        f"s = modelport.load({str(int8_bundle)!r})\n"
        "feeds, refs = s.bundle.samples()\n"
        "out = s.infer(feeds)\n"
        "assert out['logits'].shape == refs['logits'].shape\n"
        "heavy = [m for m in ('torch', 'onnx', 'tensorflow', 'openvino') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


def test_import_modelport_is_lean():
    code = ("import sys, modelport\n"
            "print([m for m in ('torch', 'onnxruntime', 'onnx', 'openvino', 'tensorflow', 'numpy')"
            " if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_infer_checks_feeds_with_one_message(int8_bundle):
    from modelport.errors import InputError

    with modelport.load(int8_bundle) as session:
        good = {"image": np.zeros((2, 1, 8, 8), np.float32)}
        assert session.infer(good)["logits"].shape == (2, 10)
        with pytest.raises(InputError, match="missing input"):
            session.infer({"pixels": good["image"]})
        with pytest.raises(InputError, match=r"must be float32, got float64: cast it"):
            session.infer({"image": good["image"].astype(np.float64)})
        with pytest.raises(InputError, match="must have rank 4"):
            session.infer({"image": np.zeros((2, 8, 8), np.float32)})
        with pytest.raises(InputError, match="dimension 2 must be 8"):
            session.infer({"image": np.zeros((2, 1, 9, 8), np.float32)})
