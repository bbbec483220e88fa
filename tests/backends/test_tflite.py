"""TFLite / LiteRT backend: real conversions (onnx2tf + TFLiteConverter), real interpreter.

Each artifact is built once per session through the real pipeline (fidelity on the held-out
evaluation splits, budget enforced by the pipeline). digits-cnn carries the heavy matrix here;
MiniLM's FP32 and INT8 modes are in test_tflite_minilm.py, which shares one onnx2tf
conversion among them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.support.exports import export_or_refusal, rows_by_target

pytestmark = pytest.mark.tflite

#: FP32 .tflite vs the torch reference (max abs error on every evaluation sample)
FP32_ATOL = 1e-4
#: MiniLM's static sequence length here: the longest evaluation sentence is 62 tokens
MINILM_SEQ = 64


@pytest.fixture(scope="session")
def tfl_digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite") / "digits"
    result, error = export_or_refusal("builtin:digits-cnn",
                            ["tflite:cpu:fp32", "tflite:cpu:fp16", "tflite:cpu:int8"], out)
    assert error is None, str(error)
    return result


@pytest.fixture(scope="session")
def tfl_digits_int8io(tmp_path_factory):
    """digits INT8 with int8 inputs/outputs, exported the way a user does: the CLI."""
    out = tmp_path_factory.mktemp("tflite") / "digits-io"
    proc = run_cli("-q", "export", "builtin:digits-cnn", "--target", "tflite:cpu:int8",
                   "--io", "int8", "--shape", "image=1x1x8x8", "--out", str(out), "--no-bench")
    assert proc.returncode == 0, proc.stderr
    return out / "tflite-cpu-int8"


# -- FP32 parity -------------------------------------------------------------------------------
def test_digits_fp32_matches_torch(tfl_digits):
    row = rows_by_target(tfl_digits)["tflite:cpu:fp32"]
    assert row["status"] == "ok"
    assert row["fidelity"]["max_abs_err"] < FP32_ATOL, row["fidelity"]
    assert row["fidelity"]["top1_agreement"] == 1.0


def test_digits_keeps_nchw_layout_and_names(tfl_digits):
    """onnx2tf would make the image input NHWC; the file keeps the ONNX [N,1,8,8]."""
    manifest = json.loads((tfl_digits.bundles["tflite:cpu:fp32"] / "manifest.json").read_text())
    assert manifest["build"]["file_io"]["inputs"] == {"image": {"dtype": "float32",
                                                                "shape": [1, 1, 8, 8]}}
    assert manifest["build"]["file_io"]["outputs"] == {"logits": {"dtype": "float32",
                                                                  "shape": [1, 10]}}


# -- FP16 / INT8 within budget on the real evaluation splits -----------------------------------
@pytest.mark.parametrize("target", ["tflite:cpu:fp16", "tflite:cpu:int8"])
def test_digits_reduced_precision_within_budget(tfl_digits, target):
    row = rows_by_target(tfl_digits)[target]
    assert row["status"] == "ok"
    assert row["fidelity"]["samples"] >= 300  # the held-out evaluation split, not a toy
    assert row["fidelity"]["accuracy_drop"] <= 0.01, row["fidelity"]
    manifest = json.loads((tfl_digits.bundles[target] / "manifest.json").read_text())
    assert manifest["accuracy"]["passed"] is True


def test_builtin_kernels_agree_with_xnnpack_on_digits_int8(tfl_digits):
    """xnnpack=False (TFLite's own kernels, probed in a child process first) runs the same
    full-integer file to the same classes; XNNPACK stays the default."""
    from modelport.bundle import open_bundle

    bundle = open_bundle(tfl_digits.bundles["tflite:cpu:int8"])
    pool, _ = bundle.samples()
    rows = [{k: v[i : i + 1] for k, v in pool.items()} for i in range(16)]  # static batch 1
    outs = {}
    for xnnpack in (True, False):
        with bundle.session(threads=1, xnnpack=xnnpack) as s:
            assert s.xnnpack is xnnpack
            outs[xnnpack] = np.concatenate([s.infer(r)["logits"] for r in rows])
    assert (outs[True].argmax(-1) == outs[False].argmax(-1)).all()
    scale = np.abs(outs[True]).max()
    assert np.abs(outs[True] - outs[False]).max() <= 0.05 * scale


def test_digits_int8_is_full_integer(tfl_digits):
    manifest = json.loads((tfl_digits.bundles["tflite:cpu:int8"] / "manifest.json").read_text())
    build = manifest["build"]
    assert build["quantization"].startswith("full-integer")
    assert build["calibration_samples"] > 100
    assert manifest["calibration"]["samples"] >= build["calibration_samples"]
    # float I/O by default: no scales to apply
    assert build["io_quantization"] == {"inputs": {}, "outputs": {}}


# -- int8 I/O ----------------------------------------------------------------------------------
def test_int8_io_bundle_records_scales(tfl_digits_int8io):
    manifest = json.loads((tfl_digits_int8io / "manifest.json").read_text())
    q = manifest["build"]["io_quantization"]
    assert q["inputs"]["image"]["dtype"] == "int8"
    assert q["outputs"]["logits"]["dtype"] == "int8"
    for entry in (q["inputs"]["image"], q["outputs"]["logits"]):
        assert entry["scale"] > 0 and -128 <= entry["zero_point"] <= 127
    # images are in [0, 1]: the calibrated input range maps onto int8 as 1/255 from -128
    assert q["inputs"]["image"]["scale"] == pytest.approx(1 / 255, rel=0.02)
    # the user-facing I/O stays float32, as in the ONNX
    assert manifest["inputs"][0]["dtype"] == "float32"
    assert manifest["outputs"][0]["dtype"] == "float32"


def test_run_applies_int8_io_quantization(tfl_digits_int8io, tfl_digits, tmp_path):
    """`modelport run` on the int8-I/O bundle gives the float logits of the same INT8 model with
    float I/O: what int8 I/O changes is who (de)quantizes, not the arithmetic inside."""
    with np.load(tfl_digits_int8io / "samples.npz") as npz:
        image = npz["in.image"][:1]
    np.savez(tmp_path / "x.npz", image=image)
    outs = {}
    for name, bundle in (("int8-io", tfl_digits_int8io),
                         ("int8", tfl_digits.bundles["tflite:cpu:int8"])):
        proc = run_cli("-q", "run", str(bundle), "--input", str(tmp_path / "x.npz"),
                       "--json", str(tmp_path / f"{name}.json"))
        assert proc.returncode == 0, proc.stderr
        outs[name] = np.asarray(json.loads((tmp_path / f"{name}.json").read_text())["logits"])
    assert outs["int8-io"].dtype == np.float64 and outs["int8-io"].shape == (1, 10)
    scale = json.loads((tfl_digits_int8io / "manifest.json").read_text())[
        "build"]["io_quantization"]["outputs"]["logits"]["scale"]
    # dequantized logits sit on the output grid ...
    steps = outs["int8-io"] / scale
    assert np.allclose(steps, np.round(steps), atol=1e-3)
    # ... and the float-I/O INT8 model dequantizes the same grid inside the file: the two differ
    # by at most one output step (the input's rounding mode may differ by one step at a tie),
    # whatever kernels this CPU runs
    assert np.abs(outs["int8-io"] - outs["int8"]).max() <= scale * (1 + 1e-3), (outs, scale)


def test_verify_int8_io_bundle(tfl_digits_int8io):
    proc = run_cli("-q", "verify", str(tfl_digits_int8io))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK tflite:cpu:int8")


def test_manifest_scales_must_match_the_file(tfl_digits_int8io, tmp_path):
    from modelport import load
    from modelport.errors import BundleError

    copy = tmp_path / "bundle"
    shutil.copytree(tfl_digits_int8io, copy)
    path = copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["build"]["io_quantization"]["inputs"]["image"]["scale"] *= 2
    path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="manifest records input 'image'"):
        load(copy)


# -- the loader is light -----------------------------------------------------------------------
def test_loading_a_tflite_bundle_imports_no_torch_or_tensorflow(tfl_digits_int8io):
    code = (
        "import sys, numpy as np, modelport\n"
        f"s = modelport.load({str(tfl_digits_int8io)!r})\n"
        "out = s.infer({'image': np.zeros((1, 1, 8, 8), np.float32)})\n"
        "assert out['logits'].shape == (1, 10) and out['logits'].dtype == np.float32\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'tensorflow', 'tf_keras', 'keras', 'onnx2tf', 'onnx', 'onnxruntime'))\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# -- options and errors ------------------------------------------------------------------------
def test_static_shapes_from_options(minilm):
    from modelport.backends.tflite.convert import static_specs
    from modelport.backends.tflite.options import TFLiteOptions

    specs = static_specs(minilm, TFLiteOptions(shapes={"input_ids": (4, 64)}))
    # one dynamic axis fixed for one input is fixed for the inputs that share it
    assert [s.shape for s in specs] == [(4, 64), (4, 64)]
    assert [s.shape for s in static_specs(minilm, TFLiteOptions())] == [(1, 128), (1, 128)]


@pytest.mark.parametrize("shapes, message", [
    ({"input_idz": (1, 128)}, "unknown input"),
    ({"input_ids": (1, 128, 3)}, "does not fit"),
])
def test_bad_static_shapes_are_named(minilm, shapes, message):
    from modelport.backends.tflite.convert import static_specs
    from modelport.backends.tflite.options import TFLiteOptions
    from modelport.errors import UsageError

    with pytest.raises(UsageError, match=message):
        static_specs(minilm, TFLiteOptions(shapes=shapes))


def test_bad_shape_flag_exits_2_without_traceback(tmp_path):
    proc = run_cli("export", "builtin:digits-cnn", "--target", "tflite:cpu:fp32",
                   "--shape", "image=1xfoo", "--out", str(tmp_path / "b"), "--no-bench")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --shape takes NAME=DIMS like input_ids=1x128, got 'image=1xfoo'"]
    assert not (tmp_path / "b").exists()


def test_onnx2tf_failure_without_litert_torch_names_the_fallback(digits, monkeypatch, tmp_path):
    """When onnx2tf cannot convert and litert-torch is absent, the error says how to fall back."""
    from modelport.backends.tflite import convert as tflite_convert
    from modelport.backends.tflite import litert_torch as tflite_litert_torch
    from modelport.backends.tflite.options import TFLiteOptions
    from modelport.errors import BuildError
    from modelport.specs import Target

    def fail(*args, **kwargs):
        raise tflite_convert._ConversionFailed("onnx2tf: ValueError: unknown rank")

    monkeypatch.setattr(tflite_convert, "_onnx2tf", fail)
    monkeypatch.setattr(tflite_convert, "_GRAPHS", {})
    monkeypatch.setattr(tflite_litert_torch, "available", lambda: False)
    with pytest.raises(BuildError, match="install litert-torch"):
        tflite_convert.convert(digits, Target.parse("tflite:cpu:fp32"), None, tmp_path,
                               TFLiteOptions())
