"""TensorRT on NVIDIA GPUs: FP32, FP16 and INT8 (explicit Q/DQ), engines built on the device.

A TensorRT engine is tied to the GPU model and TensorRT version that built it, so the bundle
made here ships what *can* travel: the validated ONNX (FP32), a mixed-precision FP16 ONNX, or a
TensorRT-ready Q/DQ ONNX (INT8, from the shared CalibrationSet; see ``trt_qdq.py``), plus the
build recipe (profiles, workspace, strong typing). The engine is built on the device on first
load, or ahead of time with ``modelport build BUNDLE``, and cached in ``<bundle>/engines/``
(see ``trt_engine.py``).

Every network is strongly typed: precision lives in the graph's types, which is the only mode
TensorRT 11 has (its BuilderFlag.FP16/INT8 are gone) and the recommended one on 10.x.
So building a bundle needs no TensorRT and works on any machine; running it needs
``tensorrt`` and a CUDA device. Device buffers are torch CUDA tensors (no pycuda).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.backends.base import (
    Artifact,
    Availability,
    Backend,
    BuildOptions,
    Session,
    has_module,
)
from modelport.backends.tensorrt.engine import (
    DEFAULT_WORKSPACE_MIB,
    Recipe,
    check_in_profile,
    make_profiles,
)
from modelport.backends.tensorrt.options import TensorRTOptions
from modelport.errors import BuildError, InputError, RuntimeFailure, TargetUnavailable
from modelport.specs import Precision, Target, TensorSpec

log = logging.getLogger("modelport")

ONNX_FILE = "model.onnx"
INSTALL_HINT = 'the engine is built on an NVIDIA GPU with pip install "modelport[tensorrt]"'


class TensorRTBackend(Backend):
    name = "tensorrt"
    extra = "tensorrt"
    Options = TensorRTOptions

    @classmethod
    def availability(cls, target: Target) -> Availability:
        """Building the bundle (ONNX + recipe) needs onnx (+ onnxruntime for INT8), no TensorRT."""
        if not has_module("onnx"):
            return Availability.missing('onnx not installed: pip install "modelport[export]"')
        if target.precision == Precision.INT8 and not has_module("onnxruntime"):
            return Availability.missing("the INT8 Q/DQ graph is made with onnxruntime.quantization: "
                                       'pip install "modelport[onnxruntime]"')
        return Availability.yes()

    @classmethod
    def runnable(cls, target: Target) -> Availability:
        reasons = []
        if not has_module("tensorrt"):
            reasons.append("no 'tensorrt' module")
        if not has_module("torch"):
            reasons.append("no torch (device buffers are torch CUDA tensors)")
        else:
            import torch

            if not torch.cuda.is_available():
                reasons.append("no CUDA device visible to torch")
        if reasons:
            reason = f"{' and '.join(reasons)}; {INSTALL_HINT}"
            installed = has_module("tensorrt") and has_module("torch")
            return Availability.no_device(reason) if installed else Availability.missing(reason)
        return Availability.yes()

    @classmethod
    def runtime_version(cls) -> str:
        try:
            return importlib.metadata.version("tensorrt")
        except importlib.metadata.PackageNotFoundError:
            return "none here (the engine is built on the device)"

    # -- build: ONNX + recipe (anywhere) ------------------------------------------------------
    def build(self, model, target: Target, calib, workdir: Path, options: BuildOptions) -> Artifact:
        src: Path = model.onnx_artifact.path
        dst = workdir / ONNX_FILE
        opts = options.of(self)
        info: dict[str, Any]
        if target.precision == Precision.INT8:
            from modelport.backends.tensorrt import qdq as trt_qdq
            from modelport.graph_prep.recipe import int8_graph

            recipe = trt_qdq.default_recipe(src, opts)
            with int8_graph(src, calib, options.cnn_recipe) as (prepared, prep):
                info = {**trt_qdq.make_qdq_onnx(prepared, dst, calib, recipe, task=model.task,
                                                budget=options.budget_or_default()), **prep}
        elif target.precision == Precision.FP16:
            info = to_fp16_onnx(src, dst)
        elif target.precision == Precision.FP32:
            _copy_onnx(src, dst)
            info = {"precision": "fp32"}
        else:
            raise BuildError(f"{target}: TensorRT targets are fp32, fp16 and int8")
        files = [ONNX_FILE] + ([f"{ONNX_FILE}.data"] if (workdir / f"{ONNX_FILE}.data").exists() else [])
        profiles, axes = make_profiles(model.onnx_artifact.inputs, bench_dims=model.bench_dims,
                                       overrides=_profile_overrides(opts.profile))
        recipe = Recipe(precision=str(target.precision), onnx=ONNX_FILE, profiles=profiles,
                        axes=axes, workspace_mib=int(opts.workspace_mib or DEFAULT_WORKSPACE_MIB))
        info["tensorrt"] = recipe.to_dict()
        info["engine"] = ("built on the device on first load (or `modelport build BUNDLE`), "
                          "cached in <bundle>/engines/ per GPU, compute capability and TensorRT")
        log.info("%s: the bundle ships %s + the build recipe; the TensorRT engine will be built "
                 "on the device (first load, or `modelport build BUNDLE` there)", target,
                 "the Q/DQ ONNX" if target.precision == Precision.INT8 else "the ONNX")
        return Artifact(workdir, ONNX_FILE, files, info, session_options={"recipe": recipe})

    def proxy_session(self, path: Path, *, inputs: list[TensorSpec], outputs: list[TensorSpec],
                      threads: int | None = None) -> Session | None:
        """ONNX Runtime CPU on the exact graph TensorRT will parse: its fidelity, checked here."""
        if not has_module("onnxruntime"):
            return None
        from modelport.backends.onnxruntime.backend import OnnxRuntimeSession

        return OnnxRuntimeSession(path, inputs, outputs, threads=threads)

    # -- load: engine for this device (built or reused), then a session ----------------------
    def load(self, path: Path, *, target: Target, inputs: list[TensorSpec],
             outputs: list[TensorSpec], threads: int | None = None, **options: Any) -> Session:
        engine, recipe, _ = self.engine_for(path, target=target, bundle=options.get("bundle"),
                                            recipe=options.get("recipe"))
        return TensorRTSession(engine, recipe, inputs, outputs)

    def engine_for(self, path: Path, *, target: Target, bundle=None, recipe: Recipe | None = None,
                   rebuild: bool = False) -> tuple[Path, Recipe, dict[str, Any]]:
        """Build (or reuse) the engine for this GPU beside the bundle; returns its record too."""
        runnable = self.runnable(target)
        if not runnable.ok:
            raise TargetUnavailable(f"cannot run {target} here: {runnable.reason}")
        from modelport.backends.tensorrt.engine import ensure_engine
        from modelport.io import sha256_file

        root = bundle.path if bundle is not None else Path(path).parent
        if recipe is None:
            data = ((bundle.manifest.get("build") or {}).get("tensorrt") if bundle else None)
            if not data:
                raise BuildError(f"{root}: no TensorRT build recipe in the manifest "
                                 "(build.tensorrt); re-export the bundle")
            recipe = Recipe.from_dict(data)
        onnx_sha = (bundle.manifest["files"].get(recipe.onnx) if bundle is not None
                    else None) or sha256_file(root / recipe.onnx)
        host_cache = _fallback_cache(onnx_sha)
        if bundle is None:
            # export loads from a temporary folder: build into the host cache, where the
            # bundle written next adopts the engine on its first load instead of rebuilding
            work_root, adopt_from = host_cache, None
        else:
            work_root = root if os.access(root, os.W_OK) else host_cache
            adopt_from = host_cache
        engine, record, built = ensure_engine(root, recipe, onnx_sha256=onnx_sha, rebuild=rebuild,
                                              work_root=work_root, adopt_from=adopt_from)
        return engine, recipe, {**record, "built_now": built, "engine_path": str(engine)}

    def build_on_device(self, bundle, *, rebuild: bool = False) -> dict[str, Any]:
        """``modelport build BUNDLE``: make the engine for this GPU now, not on first load."""
        _, _, record = self.engine_for(bundle.artifact_path, target=bundle.target, bundle=bundle,
                                       rebuild=rebuild)
        return record


class TensorRTSession(Session):
    """One execution context on one CUDA stream; buffers are torch CUDA tensors."""

    def __init__(self, engine_path: Path, recipe: Recipe, inputs: list[TensorSpec],
                 outputs: list[TensorSpec]) -> None:
        import tensorrt as trt
        import torch

        from modelport.backends.tensorrt.engine import trt_logger

        super().__init__(inputs, outputs)
        self._torch = torch
        self._recipe = recipe
        self._runtime = trt.Runtime(trt_logger())
        self._engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self._engine is None:
            raise BuildError(f"TensorRT could not load {engine_path}: rebuild it with "
                             "`modelport build BUNDLE --rebuild`")
        self._context = self._engine.create_execution_context()
        if self._context is None:  # TensorRT returns None (out of device memory, mostly)
            raise RuntimeFailure(f"TensorRT could not create an execution context for "
                                 f"{engine_path} (GPU memory?); see the TensorRT log above")
        self._stream = torch.cuda.Stream()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names
                        if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        self._dtypes = {n: _torch_dtype(trt, torch, self._engine.get_tensor_dtype(n)) for n in names}
        missing = [n for n in self.outputs if n not in self._outputs]
        if missing:
            raise BuildError(f"the engine has no output(s) {missing}; rebuild it with "
                             "`modelport build BUNDLE --rebuild`")

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        reason = check_in_profile(self._recipe, {k: tuple(v.shape) for k, v in feeds.items()})
        if reason:
            raise InputError(reason)
        with torch.cuda.stream(self._stream):
            keep = []
            for name in self._inputs:
                tensor = torch.from_numpy(np.ascontiguousarray(feeds[name])).to(
                    device="cuda", dtype=self._dtypes[name])
                keep.append(tensor)
                if not self._context.set_input_shape(name, tuple(tensor.shape)):
                    # the shape passed check_in_profile, so this is the engine's failure
                    raise RuntimeFailure(f"TensorRT refused shape {tuple(tensor.shape)} for "
                                         f"input '{name}', which is inside the engine's profile; "
                                         "see the TensorRT log above")
                self._context.set_tensor_address(name, tensor.data_ptr())
            results = {}
            for name in self._outputs:
                shape = tuple(self._context.get_tensor_shape(name))
                out = torch.empty(shape, dtype=self._dtypes[name], device="cuda")
                self._context.set_tensor_address(name, out.data_ptr())
                results[name] = out
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeFailure("TensorRT execute_async_v3 failed; see the TensorRT log "
                                     "above")
            host = {n: results[n].cpu() for n in self.outputs}
        self._stream.synchronize()
        return {n: host_array(t) for n, t in host.items()}

    def synchronize(self) -> None:
        self._stream.synchronize()

    def close(self) -> None:
        self._context = None
        self._engine = None


def host_array(tensor: Any) -> np.ndarray:
    """A CPU torch tensor from an engine output -> numpy. FP16 and BF16 outputs become float32
    (BF16 has no numpy dtype, ``.numpy()`` raises on it; FP16 is widened so every backend
    hands back float32 like the reference)."""
    import torch

    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    return tensor.numpy()


def _torch_dtype(trt, torch, dtype):
    table = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16,
             "INT8": torch.int8, "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool,
             "UINT8": torch.uint8}
    name = str(dtype).rsplit(".", 1)[-1]
    if name not in table:
        raise BuildError(f"engine I/O type {name} is not supported by modelport's TensorRT session")
    return table[name]


# -- graph preparation (on the exporting machine) ---------------------------------------------
def to_fp16_onnx(src: Path, dst: Path) -> dict[str, Any]:
    """A mixed-precision FP16 graph with FP32 I/O: the strongly typed form of an FP16 engine.

    TensorRT 11 removed BuilderFlag.FP16; precision must be in the graph. Normalizations and
    Softmax stay FP32 (their reductions overflow FP16 on long sequences); everything else,
    weights included, is FP16.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP16_FP32_OPS))
    model = onnx.load(str(src))
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    onnx.save(converted, str(dst))
    return {"precision": "fp16", "format": "mixed-precision FP16 ONNX, FP32 I/O (strongly typed)",
            "fp32_ops": list(FP16_FP32_OPS)}


FP16_FP32_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt", "Erf")


def _copy_onnx(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)
    data = src.with_name(src.name + ".data")
    if data.exists():
        import onnx

        # re-save so the external-data reference names the bundle's file, whatever src was called
        onnx.save(onnx.load(str(src)), str(dst), save_as_external_data=True,
                  location=f"{dst.name}.data")


def _profile_overrides(value) -> dict[str, tuple[int, int, int]]:
    """TensorRTOptions.profile (already parsed and type-checked) as axis -> (min, opt, max)."""
    if value is None:
        return {}
    return {k: tuple(v) for k, v in dict(value).items()}


def _fallback_cache(onnx_sha: str) -> Path:
    from modelport.io import cache_root

    return cache_root() / "tensorrt" / onnx_sha[:16]
