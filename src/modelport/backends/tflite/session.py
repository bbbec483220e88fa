"""A LiteRT interpreter as a Session (needs only ``ai-edge-litert``: no torch, no TensorFlow).

XNNPACK is on by default; ``xnnpack=False`` runs TFLite's built-in kernels, probed in a child
process first (some files abort the process in ``allocate_tensors``). Files with int8 I/O get
float feeds quantized and outputs dequantized with the scales stored in the file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.backends.base import Session
from modelport.backends.tflite.signature import SIGNATURE_KEY, signature_name
from modelport.errors import BundleError
from modelport.specs import TensorSpec


class TFLiteSession(Session):
    """One LiteRT interpreter; feeds keep the ONNX names, layout and dtypes."""

    def __init__(self, path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec], *,
                 threads: int | None = None, xnnpack: bool = True) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        super().__init__(inputs, outputs)
        self.threads = threads or os.cpu_count() or 1
        self.xnnpack = xnnpack
        if not xnnpack:
            check_builtin_kernels(path, self.threads)
        resolver = (OpResolverType.AUTO if xnnpack
                    else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self._interpreter = Interpreter(model_path=str(path), num_threads=self.threads,
                                        experimental_op_resolver_type=resolver)
        self._interpreter.allocate_tensors()  # before the signature runner holds any views
        signatures = self._interpreter.get_signature_list()
        if SIGNATURE_KEY not in signatures:
            raise BundleError(f"{path} has no '{SIGNATURE_KEY}' signature: not a modelport .tflite")
        runner = self._interpreter.get_signature_runner(SIGNATURE_KEY)
        in_details = runner.get_input_details()
        out_details = runner.get_output_details()
        self.io_quantization: dict[str, dict[str, dict[str, Any]]] = {"inputs": {}, "outputs": {}}
        self._feed_plan: list[tuple[str, int, Callable[[np.ndarray], np.ndarray]]] = []
        for i, spec in enumerate(inputs):
            detail = _find(in_details, spec.name, i, "input", path)
            self._feed_plan.append((spec.name, detail["index"],
                                    self._to_file(spec, detail, self.io_quantization["inputs"])))
        self._fetch_plan: list[tuple[str, int, Callable[[np.ndarray], np.ndarray]]] = []
        for i, spec in enumerate(outputs):
            detail = _find(out_details, spec.name, i, "output", path)
            self._fetch_plan.append((spec.name, detail["index"],
                                     self._from_file(spec, detail, self.io_quantization["outputs"])))

    # -- conversions between the user's tensors and the file's --------------------------
    @staticmethod
    def _to_file(spec: TensorSpec, detail: dict, record: dict) -> Callable[[np.ndarray], np.ndarray]:
        want = np.dtype(detail["dtype"])
        have = np.dtype(spec.dtype)
        scale, zero = _scale_zero(detail)
        if want == have:
            return np.ascontiguousarray
        if have.kind == "f" and want.kind in "iu" and scale:
            record[spec.name] = {"dtype": want.name, "scale": scale, "zero_point": zero}
            info = np.iinfo(want)

            def quantize(x: np.ndarray) -> np.ndarray:
                q = np.round(x.astype(np.float32) / np.float32(scale)) + zero
                return np.clip(q, info.min, info.max).astype(want)

            return quantize
        return lambda x: np.ascontiguousarray(x.astype(want))  # e.g. int64 ids -> int32

    @staticmethod
    def _from_file(spec: TensorSpec, detail: dict, record: dict) -> Callable[[np.ndarray], np.ndarray]:
        got = np.dtype(detail["dtype"])
        want = np.dtype(spec.dtype)
        scale, zero = _scale_zero(detail)
        if got == want:
            return lambda x: x
        if want.kind == "f" and got.kind in "iu" and scale:
            record[spec.name] = {"dtype": got.name, "scale": scale, "zero_point": zero}
            return lambda q: ((q.astype(np.float32) - np.float32(zero)) * np.float32(scale))
        return lambda x: x.astype(want)

    # -- Session ------------------------------------------------------------------------
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        interpreter = self._interpreter
        for name, index, convert in self._feed_plan:
            interpreter.set_tensor(index, convert(feeds[name]))
        interpreter.invoke()
        return {name: convert(interpreter.get_tensor(index))
                for name, index, convert in self._fetch_plan}

    def close(self) -> None:
        self._interpreter = None


_PROBE = """
import sys
from ai_edge_litert.interpreter import Interpreter, OpResolverType
Interpreter(model_path=sys.argv[1], num_threads=int(sys.argv[2]),
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            ).allocate_tensors()
"""
_probed: dict[tuple[str, int, float], str | None] = {}


def check_builtin_kernels(path: Path, threads: int) -> None:
    """Refuse, with a named error, a file TFLite's built-in kernels cannot run.

    Measured here (ai-edge-litert 2.x): the full-integer MiniLM .tflite makes
    ``allocate_tensors`` abort the whole process (SIGABRT, no message) without XNNPACK, while
    XNNPACK runs it. A child process takes that hit instead of the caller (once per file).
    """
    key = (str(path), threads, path.stat().st_mtime)
    if key not in _probed:
        proc = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(threads)],
                              capture_output=True, text=True, timeout=600, check=False)
        why = None
        if proc.returncode < 0 or proc.returncode > 128:
            why = f"allocate_tensors aborted the process (signal {abs(proc.returncode) % 128})"
        elif proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            why = f"allocate_tensors failed: {last[:200]}"
        _probed[key] = why
    if _probed[key]:
        raise BundleError(f"TFLite's built-in kernels cannot run {path.name}: {_probed[key]}; "
                          "run it with XNNPACK (the default)")


def _find(details: dict[str, dict], name: str, index: int, kind: str, path: Path) -> dict:
    # onnx2tf path: the ONNX name (or <kind>_<i> when TF rejects it); litert-torch: <kind>_<i>
    for key in (name, signature_name(name, index, kind), f"{kind}_{index}"):
        if key in details:
            return details[key]
    raise BundleError(
        f"{path}: the .tflite has no {kind} '{name}' (it has {sorted(details)}); "
        "the manifest and the file do not belong together"
    )


def _scale_zero(detail: dict) -> tuple[float, int]:
    params = detail.get("quantization_parameters") or {}
    scales = params.get("scales")
    zeros = params.get("zero_points")
    if scales is not None and len(scales) == 1:
        return float(scales[0]), int(zeros[0])
    scale, zero = detail.get("quantization", (0.0, 0))
    return float(scale), int(zero)


def check_io_quantization(session: TFLiteSession, manifest: dict, where: Path) -> None:
    """The scales/zero points a bundle records must be the ones inside its .tflite."""
    recorded = (manifest.get("build") or {}).get("io_quantization") or {}
    for kind in ("inputs", "outputs"):
        for name, want in (recorded.get(kind) or {}).items():
            got = session.io_quantization[kind].get(name)
            if got is None or not np.isclose(got["scale"], want["scale"], rtol=1e-6) \
                    or got["zero_point"] != want["zero_point"]:
                raise BundleError(
                    f"{where}: manifest records {kind[:-1]} '{name}' as {want} but the .tflite "
                    f"has {got}; rebuild the bundle"
                )
