"""torch:cuda:fp32|fp16|bf16 — PyTorch eager (optionally torch.compile) on the GPU.

The GPU baseline row of every table: what a user gets without any deployment tool. The CPU
reference module is never touched: the session runs on its own copy, moved and cast.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np

from modelport.backends.base import Session
from modelport.specs import TensorSpec

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class TorchCudaSession(Session):
    def __init__(self, module, inputs: list[TensorSpec], outputs: list[TensorSpec], *,
                 precision: str = "fp32", compile: bool = False) -> None:
        import torch

        super().__init__(inputs, outputs)
        self._torch = torch
        self._dtype = getattr(torch, DTYPES[precision])
        # fp32 means fp32: no TF32 matmuls, so the row is comparable with the CPU reference
        self._previous_tf32 = (torch.backends.cuda.matmul.allow_tf32,
                               torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False  # convolutions too (cuDNN defaults to TF32)
        self._module = copy.deepcopy(module).eval().to(device="cuda", dtype=self._dtype)
        if compile:
            self._module = torch.compile(self._module)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = {}
        for name, value in feeds.items():
            tensor = torch.from_numpy(np.ascontiguousarray(value)).to("cuda")
            args[name] = tensor.to(self._dtype) if tensor.is_floating_point() else tensor
        with torch.inference_mode():
            out = self._module(**args)
        if isinstance(out, torch.Tensor):
            out = (out,)
        elif isinstance(out, dict):
            out = tuple(out.values())
        return {n: t.float().cpu().numpy() for n, t in zip(self.outputs, out, strict=True)}

    def synchronize(self) -> None:
        self._torch.cuda.synchronize()

    def close(self) -> None:
        backends = self._torch.backends
        backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32 = self._previous_tf32
        self._module = None
