"""PyTorch eager: the FP32 reference row of every table (measured, never shipped as a bundle).

``torch:cpu:bf16`` is the same module under ``torch.autocast("cpu", dtype=torch.bfloat16)``
(matrix products and convolutions in bf16, the rest f32): what plain PyTorch gives on a CPU
with AVX512_BF16 or AMX, so tables show it beside the artifacts. Refused, with the reason, for
a CPU without bf16 arithmetic (backends/cpu_kinds.py)."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
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
from modelport.backends.torch.options import TorchOptions
from modelport.errors import BuildError
from modelport.specs import Precision, Target, TensorSpec


class TorchBackend(Backend):
    name = "torch"
    extra = "export"
    bundleable = False
    Options = TorchOptions

    @classmethod
    def availability(cls, target: Target) -> Availability:
        if not has_module("torch"):
            return Availability.missing('torch not installed: pip install "modelport[export]"')
        if target.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                return Availability.no_device("no CUDA device visible to torch")
        return Availability.yes()

    @classmethod
    def build_refusal(cls, target: Target, cpu_features: Sequence[str] | None) -> str | None:
        from modelport.backends.cpu_kinds import refuse_bf16

        return refuse_bf16(target, cpu_features)

    @classmethod
    def runnable(cls, target: Target) -> Availability:
        from modelport.backends.cpu_kinds import runnable_here

        return runnable_here(target, cls.availability(target))

    @classmethod
    def runtime_version(cls) -> str:
        return importlib.metadata.version("torch")

    def build(self, model, target: Target, calib, workdir: Path, options: BuildOptions) -> Artifact:
        if model.module is None:
            raise BuildError("torch targets need a torch model; this one was given as ONNX")
        session_options: dict[str, Any] = {"module": model.module}
        info: dict[str, Any] = {"precision": str(target.precision)}
        if target.device == "cuda":  # optional torch.compile for the GPU baseline row
            session_options["compile"] = options.of(self).compile
        elif target.precision == Precision.BF16:
            from modelport.backends.cpu_kinds import bf16_assumed
            if model.task == "text-generation":  # lm_steps.is_lm
                raise BuildError("torch:cpu:bf16 is a row for fixed-I/O models; a language "
                                 "model's decode loop runs on onnxruntime or openvino targets")

            session_options["autocast"] = "bf16"
            info.update(autocast="torch.autocast('cpu', dtype=torch.bfloat16)",
                        **bf16_assumed(options.cpu_features))
        return Artifact(workdir, "", [], info, session_options=session_options)

    def load(self, path: Path, *, target: Target, inputs: list[TensorSpec],
             outputs: list[TensorSpec], threads: int | None = None, **options: Any) -> Session:
        module = options.get("module")
        if module is None:
            raise BuildError("torch sessions are made from a live module (the reference), not a file")
        if target.device == "cuda":
            from modelport.backends.torch.cuda_session import TorchCudaSession

            return TorchCudaSession(module, inputs, outputs, precision=str(target.precision),
                                    compile=bool(options.get("compile", False)))
        return TorchSession(module, inputs, outputs, threads=threads,
                            autocast=options.get("autocast") == "bf16")


class TorchSession(Session):
    """``autocast``: run under ``torch.autocast("cpu", dtype=torch.bfloat16)``; float outputs
    come back as float32, like the other sessions'."""

    def __init__(self, module, inputs: list[TensorSpec], outputs: list[TensorSpec], *,
                 threads: int | None = None, autocast: bool = False) -> None:
        import torch

        super().__init__(inputs, outputs)
        self._torch = torch
        self._module = module.eval()
        self.threads = threads
        self.autocast = autocast
        self._previous_threads = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                    enabled=self.autocast):
            out = self._module(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        if isinstance(out, torch.Tensor):
            out = (out,)
        elif isinstance(out, dict):
            out = tuple(out.values())
        return {n: (t.float() if t.dtype == torch.bfloat16 else t).numpy()
                for n, t in zip(self.outputs, out, strict=True)}

    def close(self) -> None:
        self._torch.set_num_threads(self._previous_threads)
