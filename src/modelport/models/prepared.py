"""PreparedModel: everything the export needs to know about a model, whatever it came from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.specs import TensorSpec


@dataclass
class PreparedModel:
    """Everything the pipeline needs to know about a model, whatever it came from.

    ``module`` is the torch reference (None for an ``.onnx`` source, where ONNX Runtime FP32 on
    the original graph is the reference). ``make_inputs(batch)`` gives fresh, realistic feeds
    for export validation; ``default_data()`` gives (calibration, evaluation) sets that never
    share a sample.
    """

    name: str
    source: str
    task: str  # "embedding" | "classification" | "generic" (or a task's own fidelity kind)
    inputs: list[TensorSpec]
    output_names: list[str]
    example_inputs: dict[str, np.ndarray]
    module: Any = None
    onnx_path: Path | None = None
    exported_program: Any = None
    onnx_artifact: Any = None  # set by the pipeline after export + validation
    tokenizer_json: Path | None = None
    max_length: int = 128
    bench_dims: dict[str, int] = field(default_factory=dict)
    make_inputs: Callable[[int], dict[str, np.ndarray]] | None = None
    default_data: Callable[[], tuple[Any, Any]] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: what a device needs to use the bundle (task name, labels, image resize/normalize, ...):
    #: stored as the manifest's ``preprocessing`` (with ``max_length`` for text models)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    #: small files copied into every bundle as is (name -> bytes), e.g. a generation config
    bundle_files: dict[str, bytes] = field(default_factory=dict)
    #: what the output is (metrics.OUTPUT_KINDS: logits / embedding / regression) when a
    #: factory or --output-kind said so; None: ``task`` comes from the source itself
    output_kind: str | None = None
    #: how ``task`` was decided: "declared" (built-in, HF task, factory, --output-kind) or
    #: "output shape" (a guess the export revisits: unit-norm reference rows are embeddings)
    task_from: str = "declared"

    @property
    def input_specs(self) -> dict[str, TensorSpec]:
        return {s.name: s for s in self.inputs}

    def fresh_inputs(self, batch: int) -> dict[str, np.ndarray]:
        if self.make_inputs is not None:
            return self.make_inputs(batch)
        return tile_inputs(self.example_inputs, self.inputs, batch, seed=batch)


def tile_inputs(
    example: dict[str, np.ndarray], specs: list[TensorSpec], batch: int, *, seed: int = 0
) -> dict[str, np.ndarray]:
    """Repeat examples along the batch axis; jitter floats so rows differ (ints stay valid)."""
    rng = np.random.default_rng(seed)
    out = {}
    for spec in specs:
        array = example[spec.name]
        reps = -(-batch // array.shape[0])
        tiled = np.concatenate([array] * reps, axis=0)[:batch]
        if np.issubdtype(tiled.dtype, np.floating):
            scale = float(np.std(array)) or 1.0
            tiled = (tiled + rng.normal(0, 0.1 * scale, tiled.shape)).astype(tiled.dtype)
        out[spec.name] = np.ascontiguousarray(tiled)
    return out
