"""A static fast path beside a dynamic OpenVINO model (runtime setting ``specialize``).

The CPU plugin compiles a model whose every dimension is known into faster kernels than a
dynamic one (no shape inference per call, fixed memory plans): on MiniLM INT8 a static
[1, 128] compile ran 1.16-1.40x the dynamic one at batch 1 (docs/performance.md). ``--shape``
makes a bundle static outright and refuses other shapes; the fast path keeps the dynamic model
for them, so a bundle specialized for the shape it was timed at still takes any input. The
same IR is read twice (one compile per shape); the recipe search proposes it and keeps it only
when it wins (optimize/static_stage.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


class FastPath:
    """``shapes`` (input name -> dims) compiled static; ``takes`` says whether a feed fits."""

    def __init__(self, path: Path, shapes: Mapping[str, Any], device: str,
                 config: Mapping[str, Any], outputs: list[str]) -> None:
        import openvino as ov

        from modelport.backends.static_shapes import reshaped_ov_model

        self.shapes = {name: tuple(int(d) for d in dims) for name, dims in shapes.items()}
        self._compiled = ov.Core().compile_model(reshaped_ov_model(path, self.shapes), device,
                                                 dict(config))
        self._request = self._compiled.create_infer_request()
        self._ports = {name: self._compiled.output(name) for name in outputs}

    def takes(self, feeds: Mapping[str, np.ndarray]) -> bool:
        if len(feeds) != len(self.shapes):
            return False
        return all(tuple(getattr(v, "shape", ())) == self.shapes.get(k) for k, v in feeds.items())

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self._request.infer(dict(feeds))
        return {name: result[port] for name, port in self._ports.items()}

    def close(self) -> None:
        self._request = self._compiled = None
        self._ports = {}
