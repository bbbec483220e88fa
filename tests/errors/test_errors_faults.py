"""Error catalog, part 3: signals, full disks, existing outputs and two writers at once.

Faults are real: the CLI runs in a subprocess (tests/support/fault_driver.py) that sends itself a real
SIGINT/SIGTERM at a named point of the pipeline, or meets a real file-size limit, a real full
tmpfs, or a second real export racing for the same output. Afterwards there is no bundle or a
complete one, never half of one, and no temp dir is left (the child gets its own TMPDIR).
The signalled children export the user's MLP from its ONNX file (``mlp_onnx``, exported from
``user_mlp.py:make`` once per module): the faults land after the ONNX export, so a child that
needs no torch import and no dynamo export meets the same code; the API check runs the factory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.bundle import open_bundle
from modelport.errors import BundleExists, OutputError, UsageError
from tests.conftest import run_cli
from tests.support.catalog_support import (
    DRIVER,
    FP32,
    INT8,
    ROOT,
    assert_nothing_half_written,
    assert_user_error,
    cli_env,
    run_driver,
    write_feeds,
    write_tiny_onnx,
)

pytest_plugins = ["tests.support.catalog_fixtures"]

SLUG_INT8 = "onnxruntime-cpu-int8"
SLUG_FP32 = "onnxruntime-cpu-fp32"


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> Path:
    """150 feeds: calibration runs long enough to be interrupted in the middle."""
    return write_feeds(tmp_path_factory.mktemp("calib") / "feeds", 150, seed=3)


@pytest.fixture(scope="module")
def fat_onnx(tmp_path_factory) -> Path:
    """The tiny model with a 1 MB embedding table: too big for a small disk."""
    return write_tiny_onnx(tmp_path_factory.mktemp("fat") / "fat.onnx", vocab=65536)


def _signalled(tmp_path, model, calib, signame, at, count, *, target=INT8, extra=()):
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    proc = run_driver(f"signal:{signame}", at, str(count), "--", "export", str(model),
                      "--target", target, "--calib", str(calib), "--out", str(out),
                      "--no-bench", *extra, env=cli_env(tmp))
    code = 130 if signame == "SIGINT" else 143
    word = "interrupted" if signame == "SIGINT" else "terminated"
    assert_user_error(proc, f"{word}; nothing half-written was left behind", code=code)
    assert_nothing_half_written(out, tmp)
    leftovers = [p.name for p in tmp.iterdir() if p.name.startswith("modelport-")]
    assert not leftovers, f"temp dirs left behind: {leftovers}"
    return proc, out


CALIBRATION = "modelport.backends.onnx_qdq:CalibrationReader.get_next"
BUILD = "modelport.backends.onnx_qdq:preprocess"
WRITING = "modelport.bundle.writer:render_readme"  # artifact + samples already in the temp dir
BEFORE_RENAME = "modelport.io:_fsync_dir"  # the temp dir is complete


def _in_calibration(proc) -> None:
    assert "building onnxruntime:cpu:int8" in proc.stderr
    assert "calibrated INT8" not in proc.stderr, "the signal landed after calibration"


def test_fault_sigint_calibration(tmp_path, mlp, mlp_onnx, calib):
    proc, out = _signalled(tmp_path, mlp_onnx, calib, "SIGINT", CALIBRATION, 50)
    _in_calibration(proc)
    assert not (out / SLUG_INT8).exists()
    # the API: Ctrl-C is a KeyboardInterrupt out of modelport.export, after the same cleanup.
    # Run in a fresh interpreter, as a user's script is: native libraries that earlier tests
    # loaded into this process (TensorFlow, Ray) make a raised SIGINT crash it here.
    api_tmp = tmp_path / "api-tmp"
    api_tmp.mkdir()
    proc = subprocess.run([sys.executable, "-c", API_CTRL_C, f"{mlp}:make", str(out),
                           str(calib), str(api_tmp)], capture_output=True, text=True,
                          timeout=600, check=False, env={**os.environ, **cli_env(api_tmp)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "KeyboardInterrupt after 50 samples"
    assert not (out / SLUG_INT8).exists()
    assert_nothing_half_written(out, api_tmp)
    ours = [p.name for p in api_tmp.iterdir() if p.name.startswith("modelport-")]
    assert not ours, ours  # (torch keeps its own caches there; those are not ours to remove)


API_CTRL_C = """
import signal, sys, tempfile
import modelport
from modelport.backends import onnx_qdq

model, out, calib, tmp = sys.argv[1:]
original, calls = onnx_qdq.CalibrationReader.get_next, [0]

def get_next(self):
    calls[0] += 1
    if calls[0] == 50:
        signal.raise_signal(signal.SIGINT)
    return original(self)

onnx_qdq.CalibrationReader.get_next = get_next
tempfile.tempdir = tmp
try:
    modelport.export(model, ["onnxruntime:cpu:int8"], out=out, calib=calib, bench=None,
                     progress=False)
except KeyboardInterrupt:
    print(f"KeyboardInterrupt after {calls[0]} samples")
"""


def test_fault_sigterm_calibration(tmp_path, mlp_onnx, calib):
    proc, out = _signalled(tmp_path, mlp_onnx, calib, "SIGTERM", CALIBRATION, 50)
    _in_calibration(proc)
    assert not (out / SLUG_INT8).exists()


def test_fault_sigint_build(tmp_path, mlp_onnx, calib):
    proc, out = _signalled(tmp_path, mlp_onnx, calib, "SIGINT", BUILD, 1)
    assert "building onnxruntime:cpu:int8" in proc.stderr and "calibrated" not in proc.stderr
    assert not (out / SLUG_INT8).exists()


def test_fault_sigterm_build(tmp_path, mlp_onnx, calib):
    proc, out = _signalled(tmp_path, mlp_onnx, calib, "SIGTERM", BUILD, 1)
    assert "building onnxruntime:cpu:int8" in proc.stderr and "calibrated" not in proc.stderr
    assert not (out / SLUG_INT8).exists()


def test_fault_sigint_writing(tmp_path, mlp_onnx, calib):
    # a previous bundle is there and --force is given: the interrupted write must keep it
    previous = modelport.export(str(mlp_onnx), [FP32], out=tmp_path / "out", bench=None,
                                progress=False).bundles[FP32]
    before = open_bundle(previous).manifest["created_at"], (previous / "model.onnx").read_bytes()
    time.sleep(1.1)  # created_at has one-second resolution
    proc, out = _signalled(tmp_path, mlp_onnx, calib, "SIGINT", WRITING, 1, target=FP32,
                           extra=("--force",))
    assert "wrote" not in proc.stderr
    kept = open_bundle(out / SLUG_FP32)
    assert (kept.manifest["created_at"], (kept.path / "model.onnx").read_bytes()) == before


def test_fault_sigterm_writing(tmp_path, mlp_onnx, calib):
    proc, out = _signalled(tmp_path, mlp_onnx, calib, "SIGTERM", BEFORE_RENAME, 1, target=FP32)
    assert "wrote" not in proc.stderr
    assert not (out / SLUG_FP32).exists()


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if not shutil.which("mount") or os.geteuid() != 0:
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, check=False)
    return proc.returncode == 0


def test_fault_disk_full(tmp_path, fat_onnx):
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "256k"):
        pytest.skip("cannot mount a tmpfs here (needs root); test_fault_file_size_limit "
                    "covers a refused write")
    try:
        out = small / "out"
        proc = run_cli("export", str(fat_onnx), "--target", FP32, "--out", str(out),
                       "--no-bench", env=cli_env(tmp_path / "tmp"))
        assert_user_error(proc, "the disk is full", "nothing was left behind",
                          "choose another --out")
        assert_nothing_half_written(small, tmp_path / "tmp")
        assert not (out / SLUG_FP32).exists()
        with pytest.raises(OutputError, match="the disk is full"):
            modelport.export(str(fat_onnx), [FP32], out=out, bench=None, progress=False)
        assert_nothing_half_written(small)
        assert shutil.disk_usage(small).used < 64 * 1024, "space was not given back"
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_fault_file_size_limit(tmp_path, fat_onnx):
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    # from the moment the bundle is published, files may not grow past 200 kB (EFBIG)
    proc = run_driver("fsize:200000", "modelport.bundle.writer:publish_dir", "1", "--",
                      "export", str(fat_onnx), "--target", FP32, "--out", str(out),
                      "--no-bench", env=cli_env(tmp))
    assert_user_error(proc, "exceeds the allowed file size", "nothing was left behind")
    assert_nothing_half_written(out, tmp)
    assert not (out / SLUG_FP32).exists()


def test_fault_output_exists(tmp_path, tiny_onnx):
    out = tmp_path / "out"
    first = modelport.export(str(tiny_onnx), [FP32], out=out, bench=None, progress=False)
    manifest = (first.bundles[FP32] / "manifest.json").read_bytes()
    proc = run_cli("export", str(tiny_onnx), "--target", FP32, "--out", str(out), "--no-bench")
    assert_user_error(proc, f"'{out / SLUG_FP32}' exists already", "pass --force")
    with pytest.raises(BundleExists, match="pass --force"):
        modelport.export(str(tiny_onnx), [FP32], out=out, bench=None, progress=False)
    assert (out / SLUG_FP32 / "manifest.json").read_bytes() == manifest  # untouched
    assert_nothing_half_written(out)


def test_fault_force_replaces_atomically(tmp_path, tiny_onnx):
    out = tmp_path / "out"
    modelport.export(str(tiny_onnx), [FP32], out=out, bench=None, progress=False)
    old = open_bundle(out / SLUG_FP32).manifest["created_at"]
    time.sleep(1.1)
    bundle = out / SLUG_FP32
    # before every rename/remove of the publish step, the bundle must be complete
    proc = run_driver(f"audit:{bundle}", "modelport.bundle.writer:publish_dir", "1", "--",
                      "export", str(tiny_onnx), "--target", FP32, "--out", str(out),
                      "--no-bench", "--force")
    assert proc.returncode == 0, proc.stderr
    violations = Path(str(bundle) + ".violations")
    assert not violations.exists(), violations.read_text()
    assert open_bundle(bundle).manifest["created_at"] != old  # replaced
    assert_nothing_half_written(out)
    # the audit does catch a gap: the plain two-rename replacement leaves one
    code = ("import sys, runpy; import modelport.io as a; a._renameat2 = lambda: None;"
            f" sys.argv = [{str(DRIVER)!r}] + sys.argv[1:]; runpy.run_path({str(DRIVER)!r},"
            " run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code, f"audit:{bundle}",
                           "modelport.bundle.writer:publish_dir", "1", "--", "export",
                           str(tiny_onnx), "--target", FP32, "--out", str(out), "--no-bench",
                           "--force"], capture_output=True, text=True, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert violations.exists() and "incomplete" in violations.read_text()
    violations.unlink()
    assert_nothing_half_written(out)


def test_fault_out_is_a_file(tmp_path, tiny_onnx):
    out = tmp_path / "out.txt"
    out.write_text("keep me")
    proc = run_cli("export", str(tiny_onnx), "--target", FP32, "--out", str(out), "--no-bench")
    assert_user_error(proc, "is a file", "give a directory")
    with pytest.raises(UsageError, match="is a file"):
        modelport.export(str(tiny_onnx), [FP32], out=out, bench=None, progress=False)
    assert out.read_text() == "keep me"


def test_concurrent_exports_same_out(tmp_path, fat_onnx):
    out, meet = tmp_path / "out", tmp_path / "meet"
    meet.mkdir()
    # both processes run the whole export, then wait for each other right before publishing
    args = ["--", "export", str(fat_onnx), "--target", FP32, "--out", str(out), "--no-bench"]
    env = {**os.environ, **cli_env(tmp_path / "tmp")}
    procs = [subprocess.Popen([sys.executable, str(DRIVER), f"meet:{meet}:2",
                               "modelport.bundle.writer:publish_dir", "1", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env, cwd=ROOT) for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    assert len(list(meet.iterdir())) == 2, "the two exports did not overlap"
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[0] == 2)
    line = assert_user_error(subprocess.CompletedProcess([], 2, loser[1], loser[2]))
    assert "exists already" in line or "another process" in line or "appeared" in line, line
    bundle = open_bundle(out / SLUG_FP32)  # complete, checksums verified
    with modelport.load(bundle.path) as session:
        assert session.infer({"ids": np.ones((1, 4), np.int64)})["embedding"].shape == (1, 4)
    assert_nothing_half_written(out, tmp_path / "tmp")
