"""PyTorch eager: the FP32 reference row of every table (measured, never shipped as a bundle)."""

from __future__ import annotations

import importlib.metadata
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
from modelport.backends.torch.options import TorchOptions
from modelport.errors import BuildError
from modelport.specs import Target, TensorSpec


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
    def runtime_version(cls) -> str:
        return importlib.metadata.version("torch")

    def build(self, model, target: Target, calib, workdir: Path, options: BuildOptions) -> Artifact:
        if model.module is None:
            raise BuildError("torch targets need a torch model; this one was given as ONNX")
        session_options: dict[str, Any] = {"module": model.module}
        if target.device == "cuda":  # optional torch.compile for the GPU baseline row
            session_options["compile"] = options.of(self).compile
        return Artifact(workdir, "", [], {"precision": str(target.precision)},
                        session_options=session_options)

    def load(self, path: Path, *, target: Target, inputs: list[TensorSpec],
             outputs: list[TensorSpec], threads: int | None = None, **options: Any) -> Session:
        module = options.get("module")
        if module is None:
            raise BuildError("torch sessions are made from a live module (the reference), not a file")
        if target.device == "cuda":
            from modelport.backends.torch.cuda_session import TorchCudaSession

            return TorchCudaSession(module, inputs, outputs, precision=str(target.precision),
                                    compile=bool(options.get("compile", False)))
        return TorchSession(module, inputs, outputs, threads=threads)


class TorchSession(Session):
    def __init__(self, module, inputs: list[TensorSpec], outputs: list[TensorSpec], *,
                 threads: int | None = None) -> None:
        import torch

        super().__init__(inputs, outputs)
        self._torch = torch
        self._module = module.eval()
        self.threads = threads
        self._previous_threads = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            out = self._module(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        if isinstance(out, torch.Tensor):
            out = (out,)
        elif isinstance(out, dict):
            out = tuple(out.values())
        return {n: t.numpy() for n, t in zip(self.outputs, out, strict=True)}

    def close(self) -> None:
        self._torch.set_num_threads(self._previous_threads)
