"""Static fast paths beside a dynamic OpenVINO model (runtime setting ``specialize``).

The CPU plugin compiles a model whose every dimension is known into faster kernels than a
dynamic one (no shape inference per call, fixed memory plans): on MiniLM INT8 a static
[1, 128] compile ran 1.16-1.40x the dynamic one at batch 1 (docs/performance.md). ``--shape``
makes a bundle static outright and refuses other shapes; the fast path keeps the dynamic model
for them, so a bundle specialized for the shapes it was timed at still takes any input. The
same IR is read once more per shape (one compile each: batch 1 for latency, and the bench's
batch 32 too, where a static compile ran 1.08x less CPU time per call); the recipe search
proposes each shape and keeps it only when it wins at that shape (optimize/static_stage.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


class FastPath:
    """Static compiles of the same IR, one per shape in ``shapes`` (each input name -> dims;
    one mapping or a list of them); ``takes`` says whether a feed fits one of them."""

    def __init__(self, path: Path, shapes: Any, device: str,
                 config: Mapping[str, Any], outputs: list[str],
                 hints: list[str | None] | None = None) -> None:
        """``hints``: an inference precision per shape, in order (None or missing: the one in
        ``config``, the dynamic model's)."""
        import openvino as ov

        from modelport.backends.static_shapes import reshaped_ov_model

        core = ov.Core()
        self.shapes = [{name: tuple(int(d) for d in dims) for name, dims in shape.items()}
                       for shape in (shapes if isinstance(shapes, (list, tuple)) else [shapes])]
        self._paths: dict[tuple, tuple[Any, Any, dict[str, Any]]] = {}
        hints = list(hints or [])
        for i, shape in enumerate(self.shapes):
            hint = hints[i] if i < len(hints) else None
            compiled = core.compile_model(reshaped_ov_model(path, shape), device, {
                **config, **({"INFERENCE_PRECISION_HINT": hint} if hint else {})})
            self._paths[_key(shape)] = (compiled, compiled.create_infer_request(),
                                        {name: compiled.output(name) for name in outputs})

    def takes(self, feeds: Mapping[str, np.ndarray]) -> bool:
        return _key({k: getattr(v, "shape", ()) for k, v in feeds.items()}) in self._paths

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        _, request, ports = self._paths[_key({k: v.shape for k, v in feeds.items()})]
        result = request.infer(dict(feeds))
        return {name: result[port] for name, port in ports.items()}

    def close(self) -> None:
        self._paths = {}


def _key(shape: Mapping[str, Any]) -> tuple:
    return tuple(sorted((str(k), tuple(int(d) for d in v)) for k, v in shape.items()))
