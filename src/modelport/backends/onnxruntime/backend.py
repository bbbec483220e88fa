"""ONNX Runtime on CPU: FP32 (the validated ONNX as is) and INT8 (QDQ, calibrated on your data).

INT8 recipe, chosen by measurement on this project's AVX-512 VNNI CPU (see ort_quantize.py
and bench/RESULTS.md): u8 activations + s8 per-channel weights (s8 activations were slower
than FP32 on x86), dynamic quantization restricted to MatMul/Gemm (dynamic Conv emits
ConvInteger, 4x slower than FP32).
"""

from __future__ import annotations

import importlib.metadata
import re
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
    require,
)
from modelport.backends.onnxruntime.options import OnnxRuntimeOptions
from modelport.errors import ModelLoadError, ModelportError, UnsupportedOp
from modelport.specs import Precision, Target, TensorSpec

#: precisions whose KV-cache LM graph is fused first (lm_graph.py)
LM_FUSED = (Precision.FP32, Precision.INT4, Precision.INT8WO)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    extra = "onnxruntime"
    Options = OnnxRuntimeOptions
    budget_hint = "try --int8-mode / --calib-method"

    @classmethod
    def availability(cls, target: Target) -> Availability:
        if not has_module("onnxruntime"):
            return Availability.missing('onnxruntime not installed: pip install "modelport[onnxruntime]"')
        if target.precision == Precision.BF16:
            from modelport.backends.onnxruntime.bf16 import REFUSAL

            return Availability.unsupported(REFUSAL)
        return Availability.yes()

    @classmethod
    def runtime_version(cls) -> str:
        return importlib.metadata.version("onnxruntime")

    def build(self, model, target: Target, calib, workdir: Path, options: BuildOptions) -> Artifact:
        """The graph for ``target``; with ``--shape``, static at those shapes (applied at load:
        backends/static_shapes.py)."""
        from modelport.backends import static_shapes

        fixed = static_shapes.requested(model, options.of(self))  # a bad --shape: before work
        artifact = self._build(model, target, calib, workdir, options)
        return static_shapes.specialize_artifact(artifact, model, static_shapes.as_setting(
            fixed)) if fixed else artifact

    def _build(self, model, target: Target, calib, workdir: Path, options: BuildOptions
               ) -> Artifact:
        require("onnxruntime", extra=self.extra, what="ONNX Runtime")
        onnx_path: Path = model.onnx_artifact.path
        dst = workdir / "model.onnx"
        if target.precision in LM_FUSED and getattr(model, "task", None) == "text-generation":
            from modelport.backends.onnxruntime.lm_graph import build_lm  # fused norms

            context = (getattr(model, "preprocessing", None) or {}).get("context_length")
            return build_lm(onnx_path, workdir, target.precision, options.of(self), context)
        if target.precision == Precision.FP32:
            shutil.copyfile(onnx_path, dst)
            files = ["model.onnx"]
            data = onnx_path.with_name(onnx_path.name + ".data")
            if data.exists():
                shutil.copyfile(data, workdir / data.name)
                files.append(data.name)
            return Artifact(workdir, "model.onnx", files, {"precision": "fp32"})
        if target.precision in (Precision.INT4, Precision.INT8WO):
            from modelport.backends.onnxruntime.weight_only import quantize_weight_only

            info = quantize_weight_only(onnx_path, dst, target.precision, options.of(self))
            return Artifact(workdir, "model.onnx", ["model.onnx"], info)
        from modelport.backends.cpu_recipes import apply_recipe
        from modelport.backends.onnxruntime.quantize import has_activation_matmul, reduce_range
        from modelport.backends.onnxruntime.variants import build_int8

        opts, cpu = apply_recipe(self.name, options.of(self), options.cpu_features,
                                 attention=has_activation_matmul(onnx_path))
        # the CNN recipe's variants before static QDQ, chosen on a validation slice
        info = {**build_int8(onnx_path, dst, calib, model, opts, options.cnn_recipe,
                             budget=options.budget_or_default(),
                             weight_qmax=64 if reduce_range(opts) else 127), **cpu}
        from modelport.backends.onnx_qdq import external_files

        files = ["model.onnx"] + [f.name for f in external_files(dst)]
        return Artifact(workdir, "model.onnx", files, info)

    def load(self, path: Path, *, target: Target, inputs: list[TensorSpec],
             outputs: list[TensorSpec], threads: int | None = None, **options: Any) -> Session:
        require("onnxruntime", extra=self.extra, what="ONNX Runtime")
        from modelport.backends.runtime_settings import runtime_settings

        saved = runtime_settings(options)  # what --optimize chose, re-applied
        return OnnxRuntimeSession(path, inputs, outputs, threads=threads or saved.get("threads"),
                                  graph_optimization_level=saved.get("graph_optimization_level"),
                                  shapes=saved.get("shapes"), spinning=saved.get("spinning"),
                                  kv_buffer=saved.get("kv_buffer"))


class OnnxRuntimeSession(Session):
    def __init__(self, path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec], *,
                 threads: int | None = None, graph_optimization_level: str | None = None,
                 shapes: Mapping[str, Any] | None = None, spinning: bool | None = None,
                 kv_buffer: str | None = None) -> None:
        import onnxruntime as ort

        from modelport.backends.static_shapes import free_dimension_overrides, static_inputs

        super().__init__(static_inputs(inputs, shapes), outputs)
        opts = ort.SessionOptions()
        self.graph_optimization_level = graph_optimization_level or "all"
        opts.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, GRAPH_LEVELS[self.graph_optimization_level])
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        # errors come back as exceptions (said in one line below); ORT's own log would repeat them
        opts.log_severity_level = 4
        self.threads = threads
        self.spinning = spinning
        if spinning is False:  # LM decode (lm_graph.py): idle pool threads sleep, not spin
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        #: --shape: input name -> dims, fixed before ORT optimizes the graph (None: dynamic)
        self.static_shapes = dict(shapes) if shapes else None
        for axis, size in (free_dimension_overrides(path, shapes) if shapes else {}).items():
            opts.add_free_dimension_override_by_name(axis, size)
        self._session = create_session(path, opts)
        self._output_names = list(self.outputs)
        #: inputs the graph takes with a default (initializers listed as inputs), e.g. an LM's
        #: ``logits_to_keep`` (lm_head.py)
        self.optional_inputs = tuple(i.name for i in self._session.get_overridable_initializers())
        #: "shared": LM generation writes the KV cache into one buffer (kv_buffer.py)
        self.kv_buffer = kv_buffer

    def kv_cache(self, past_specs: list[TensorSpec], batch: int, length: int) -> Any:
        """A SharedKVCache of ``length`` positions for LMSession.generate, or None when the
        bundle's graph needs the past as an exact copy (kv_buffer is not "shared")."""
        if self.kv_buffer != "shared" or self._session is None:
            return None
        from modelport.backends.onnxruntime.kv_buffer import SharedKVCache

        return SharedKVCache(self._session, past_specs, batch, length)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self._output_names, dict(feeds))
        return dict(zip(self._output_names, values, strict=True))

    def _describe_failure(self, exc: Exception) -> str:
        match = _RUN_FAILURE.search(str(exc))
        if match:
            op, node, message = match.groups()
            message = _SOURCE_LOCATION.sub("", message).strip()  # C++ file:line and assertion
            return f"ONNX Runtime failed at node '{node}' ({op}): {message[:300]}"
        return super()._describe_failure(exc)

    def close(self) -> None:
        self._session = None


#: ``graph_optimization_level`` names (runtime settings) -> ort.GraphOptimizationLevel members
GRAPH_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED",
                "basic": "ORT_ENABLE_BASIC", "disabled": "ORT_DISABLE_ALL"}

_RUN_FAILURE = re.compile(r"running (\w+) node\. Name:'([^']*)' Status Message: ([^\n]*)")
_NO_KERNEL = re.compile(r"Could not find an implementation for (\w+)\((\d+)\) node with name '([^']*)'")
_SOURCE_LOCATION = re.compile(r"/onnxruntime_src/\S+:\d+ .*? was false\. ")
_UNKNOWN_OP = re.compile(r"([\w.]*):(\w+)\((-?\d+)\) is not a registered function/op")


def create_session(path: Path | str, options: Any = None):
    """``ort.InferenceSession`` on CPU; an op it cannot run is an UnsupportedOp naming the node."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own pybind exception types
        raise load_failure(path, exc) from None


def load_failure(path: Path | str, exc: Exception) -> ModelportError:
    """Turn an ONNX Runtime load error into one line naming the node and what to try instead."""
    text = str(exc)
    if match := _NO_KERNEL.search(text):
        op, opset, node = match.groups()
        return UnsupportedOp(
            f"ONNX Runtime (CPU) has no kernel for node '{node or _node_of(path, op)}' ({op}, "
            f"opset {opset}) with the input types it gets: try another target ('modelport "
            "targets'), export in float32, or another --opset"
        )
    if match := _UNKNOWN_OP.search(text):
        domain, op, _ = match.groups()
        return UnsupportedOp(
            f"ONNX Runtime does not know op '{domain or 'ai.onnx'}:{op}' (node "
            f"'{_node_of(path, op)}'): export without custom ops, or try another target "
            "('modelport targets')"
        )
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    first = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : |Load model from \S+ failed:", "", first)
    return ModelLoadError(f"ONNX Runtime cannot load the model: {first[:300]}; fix or re-export it")


def _node_of(path: Path | str, op_type: str) -> str:
    """The first node of ``op_type`` in the graph (ORT's message does not always name it)."""
    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - only a nicer message is at stake
        return "?"
    return next((n.name or f"#{i}" for i, n in enumerate(graph.node) if n.op_type == op_type), "?")
