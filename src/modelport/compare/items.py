"""What `modelport compare` can run: a bundle (any registered runtime) or a bare .onnx file.

A bundle is loaded through the registry like everywhere else; a bare ``.onnx`` runs in ONNX
Runtime on CPU (the one runtime that can run any ONNX graph, and the one per-layer compare
instruments).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import UsageError
from modelport.specs import TensorSpec


@dataclass
class Item:
    label: str
    path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    task: str | None = None
    onnx_path: Path | None = None  # the ONNX graph behind this item, when there is one
    bundle: Any = None
    samples: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] = field(
        default_factory=lambda: ({}, {}))
    tokenizer_json: Path | None = None
    max_length: int = 128

    def session(self, threads: int | None = None):
        if self.bundle is not None:
            return self.bundle.session(threads=threads)
        from modelport.backends.base import require
        from modelport.backends.onnxruntime.backend import OnnxRuntimeBackend, OnnxRuntimeSession

        require("onnxruntime", extra=OnnxRuntimeBackend.extra, what="comparing an .onnx file")
        return OnnxRuntimeSession(self.path, self.inputs, self.outputs, threads=threads)


def open_item(path: str | Path) -> Item:
    """A bundle directory (manifest.json inside) or an ``.onnx`` file."""
    path = Path(path)
    if path.is_dir():
        from modelport.bundle import open_bundle

        bundle = open_bundle(path)
        m = bundle.manifest
        art = bundle.artifact_path
        pre = m.get("preprocessing") or {}
        tok = path / pre["tokenizer"] if pre.get("tokenizer") else None
        return Item(label=f"{m['target']} ({path.name})", path=path, inputs=bundle.inputs,
                    outputs=bundle.outputs, task=m["model"].get("task"),
                    onnx_path=art if art.suffix == ".onnx" else None, bundle=bundle,
                    samples=bundle.samples(), tokenizer_json=tok,
                    max_length=int(pre.get("max_length") or 128))
    if path.is_file() and path.suffix == ".onnx":
        from modelport.exporters.onnx_io import read_io_specs

        inputs, outputs = read_io_specs(path)
        return Item(label=path.name, path=path, inputs=inputs, outputs=outputs,
                    onnx_path=path)
    if not path.exists():
        raise UsageError(f"'{path}' not found: give bundle directories or .onnx files")
    raise UsageError(f"'{path}' is neither a bundle directory nor an .onnx file")
