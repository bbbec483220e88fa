"""Shared, session-scoped fixtures: each expensive artifact is built once per test run.

Markers gate optional runtimes: a test marked `openvino` / `tflite` / `tensorrt` / `gpu` is
skipped with the reason when that runtime or device is missing here.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parents[1]

# A shell without job control starts `cmd &` with SIGINT ignored, and an ignored signal stays
# ignored across exec: every CLI a test starts would then shrug off the Ctrl-C the fault tests
# send. Restore the default here so the children get Python's own handler, however pytest runs.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

MARKER_MODULES = {
    "onnxruntime": ("onnxruntime", 'pip install "modelport[onnxruntime]"'),
    "openvino": ("openvino", 'pip install "modelport[openvino]"'),
    "tflite": ("ai_edge_litert", 'pip install "modelport[tflite]"'),
    "tensorrt": ("tensorrt", "TensorRT is not installable from this machine's registries"),
}


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


#: the longest files (a 2.15 GB model through three backends, mostly disk work; the Ray
#: cluster of the sweep tests; the zero-shot and audio task fixtures) start first, so that
#: under `make test`'s pytest-xdist workers the short files fill the end, not a long one
#: (`make test` passes --no-loadscope-reorder: xdist would otherwise start the files with the
#: most tests first, and this one-test file last)
RUN_FIRST = ("tests/models/test_large_model.py", "tests/tasks/test_zero_shot.py",
             "tests/tasks/test_audio_tasks.py", "tests/sweep/test_sweep_ray.py",
             "tests/passes/test_passes.py", "tests/backends/test_tensorrt_cpu.py")


def _start_order(items) -> dict[str, int]:
    """Longest files first (RUN_FIRST, then files with a test marked slow), so both workers
    finish at about the same time; the order within a file is kept."""
    slow = {str(i.fspath) for i in items if i.get_closest_marker("slow")}
    first = {str(ROOT / p) for p in RUN_FIRST}
    return {str(i.fspath): 0 if str(i.fspath) in first else 1 if str(i.fspath) in slow else 2
            for i in items}


def pytest_collection_modifyitems(config, items):
    order = _start_order(items)
    items.sort(key=lambda i: order[str(i.fspath)])  # stable
    for item in items:
        for marker, (module, how) in MARKER_MODULES.items():
            if marker in item.keywords and not _has(module):
                item.add_marker(pytest.mark.skip(reason=f"{module} not installed ({how})"))
        if "gpu" in item.keywords and not _cuda():
            item.add_marker(pytest.mark.skip(reason="no CUDA device on this machine"))


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory):
    """One modelport cache (digits-cnn weights, ONNX exports, TensorRT engines) for the whole
    test run, shared by pytest-xdist's workers (their temp dirs sit under one root), unless one
    is configured. Every writer in it renames into place, so workers never see half an entry."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    cache = root / "modelport-cache"
    cache.mkdir(exist_ok=True)
    os.environ.setdefault("MODELPORT_CACHE", str(cache))


def _exported(name: str, tmp_path_factory):
    from modelport.exporters import export_validated
    from modelport.models import resolve_model

    model = resolve_model(f"builtin:{name}")
    model.onnx_artifact = export_validated(model, tmp_path_factory.mktemp(f"onnx-{name}")
                                           / "model.onnx")
    return model


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """builtin:digits-cnn, exported to ONNX and validated (model.onnx_artifact is set)."""
    return _exported("digits-cnn", tmp_path_factory)


@pytest.fixture(scope="session")
def minilm(tmp_path_factory):
    """builtin:minilm, exported to ONNX and validated (model.onnx_artifact is set)."""
    return _exported("minilm", tmp_path_factory)


@pytest.fixture(scope="session")
def digits_data(digits):
    """(calibration, evaluation) CalibrationSets of the held-out digits, with labels."""
    return digits.default_data()


@pytest.fixture(scope="session")
def minilm_data(minilm):
    """(calibration, evaluation) CalibrationSets of the project's sentences."""
    return minilm.default_data()


@pytest.fixture(scope="session")
def digits_bundles(tmp_path_factory):
    """builtin:digits-cnn exported to ORT FP32 + INT8 bundles through the real pipeline."""
    import modelport

    out = tmp_path_factory.mktemp("bundles") / "digits"
    result = modelport.export("builtin:digits-cnn",
                              ["onnxruntime:cpu:fp32", "onnxruntime:cpu:int8"],
                              out=out, bench=None, progress=False)
    return result


def run_cli(*args: str, timeout: float = 600, env: dict | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (what a user types)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "modelport.cli", *args],
        check=False, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd,
    )


@pytest.fixture(scope="session")
def runtime_only_python(tmp_path_factory) -> Path:
    """The python of a fresh venv holding only ``modelport[onnxruntime]`` (no torch, no
    converters): what a device installs. Versions pinned by constraints.txt, so pip's cache
    usually serves it; made once per test run: pytest-xdist's workers share one venv (the
    first to lock builds it, the others wait), as three files on three workers would
    otherwise each build their own."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    venv = root / "device-venv"
    py = venv / "bin" / "python"
    with open(root / "device-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "READY").exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                           timeout=300)
            install = subprocess.run(
                [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                 "-c", str(ROOT / "constraints.txt"), f"{ROOT}[onnxruntime]"],
                check=False, capture_output=True, text=True, timeout=900,
            )
            assert install.returncode == 0, install.stderr[-3000:]
            (venv / "READY").touch()
    return py
