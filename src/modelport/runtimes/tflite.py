"""TFLite / LiteRT on CPU: FP32, FP16 and full-integer INT8 ``.tflite`` files.

Building needs the converter toolchain (``modelport[tflite]``: onnx2tf + TensorFlow, see
tflite_convert.py); running a bundle needs only the LiteRT interpreter (``ai-edge-litert``,
``modelport[litert]``), never torch or TensorFlow. XNNPACK is on by default (the interpreter's
default delegate); ``xnnpack=False`` runs TFLite's built-in kernels instead.

TFLite files are static-shape: each one runs exactly the batch size and sequence length it was
exported at (``--shape``). With ``--io int8`` the file's inputs/outputs are int8; the session
quantizes float feeds and dequantizes outputs with the scales stored in the file, so callers
(``modelport run``, ``bench``, ``verify``) feed and get the same float tensors as for FP32.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import BundleError
from modelport.runtimes.base import (
    Artifact,
    Availability,
    Backend,
    BuildOptions,
    Session,
    has_module,
    require,
)
from modelport.specs import Target, TensorSpec

#: the interpreter, and the modules building needs on top of it
RUNTIME_MODULE = "ai_edge_litert"
TOOLCHAIN_MODULES = ("tensorflow", "onnx2tf", "tf_keras", "onnx_graphsurgeon", "sng4onnx")
SIGNATURE_KEY = "serving_default"
_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def signature_name(spec_name: str, index: int, kind: str) -> str:
    """The name a tensor carries in the .tflite signature: the ONNX name when TF accepts it as
    is, else ``input_<i>`` / ``output_<i>`` (position in the ONNX graph)."""
    return spec_name if _SAFE_NAME.match(spec_name) else f"{kind}_{index}"


class TFLiteBackend(Backend):
    name = "tflite"
    extra = "tflite"
    #: what to try when INT8 misses the budget (see README "TFLite / LiteRT targets")
    budget_hint = ("keep op types in float with --tflite-float-ops, e.g. "
                   "MEAN,SQUARED_DIFFERENCE,RSQRT,SOFTMAX,GELU; for transformers on x86 "
                   "onnxruntime:cpu:int8 or openvino:cpu:int8 keep fidelity")

    @classmethod
    def availability(cls, target: Target) -> Availability:
        """Can we build here? Needs the interpreter and a converter: the onnx2tf toolchain, or
        litert-torch (the fallback, installed on its own)."""
        missing = [m for m in (RUNTIME_MODULE, *TOOLCHAIN_MODULES) if not has_module(m)]
        if missing and has_module(RUNTIME_MODULE) and has_module("litert_torch"):
            return Availability(True, "litert-torch only (onnx2tf toolchain not installed)")
        if missing:
            return Availability(
                False, f"{', '.join(missing)} not installed: pip install \"modelport[tflite]\""
            )
        return Availability(True)

    @classmethod
    def runnable(cls, target: Target) -> Availability:
        """Running a .tflite needs only the LiteRT interpreter."""
        if not has_module(RUNTIME_MODULE):
            return Availability(
                False, 'ai-edge-litert not installed: pip install "modelport[litert]"'
            )
        return Availability(True)

    @classmethod
    def runtime_version(cls) -> str:
        return importlib.metadata.version("ai-edge-litert")

    def build(self, model, target: Target, calib, workdir: Path, options: BuildOptions) -> Artifact:
        require(RUNTIME_MODULE, extra=self.extra, what="TFLite")
        from modelport.runtimes.tflite_convert import convert

        return convert(model, target, calib, workdir, options)

    def load(self, path: Path, *, target: Target, inputs: list[TensorSpec],
             outputs: list[TensorSpec], threads: int | None = None, **options: Any) -> Session:
        require(RUNTIME_MODULE, extra="litert", what="Running a .tflite")
        bundle = options.get("bundle")
        session = TFLiteSession(path, inputs, outputs, threads=threads,
                                xnnpack=options.get("xnnpack", True))
        if bundle is not None:
            check_io_quantization(session, bundle.manifest, bundle.path)
        return session


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
