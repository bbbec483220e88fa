"""Targets, precisions and tensor specs: the small typed vocabulary every module shares."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from modelport.errors import UnknownTarget


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"  # weights and activations
    INT4 = "int4"  # weight-only 4-bit (language models)
    INT8WO = "int8wo"  # weight-only 8-bit


#: activations stay float; calibration data is used only by data-aware methods (AWQ)
WEIGHT_ONLY = (Precision.INT4, Precision.INT8WO)


@dataclass(frozen=True)
class Target:
    """``runtime:device:precision``, e.g. ``onnxruntime:cpu:int8``."""

    runtime: str
    device: str
    precision: Precision

    def __str__(self) -> str:
        return f"{self.runtime}:{self.device}:{self.precision}"

    @property
    def slug(self) -> str:
        """A file-system-safe name, used for per-target bundle directories."""
        return f"{self.runtime}-{self.device}-{self.precision}"

    @classmethod
    def parse(cls, text: str) -> Target:
        """Parse and check a target string against the registry; suggest the closest on a typo."""
        from modelport import registry

        known = registry.all_target_names()
        text = text.strip().lower()
        if text in known:
            runtime, device, precision = text.split(":")
            return cls(runtime, device, Precision(precision))
        close = difflib.get_close_matches(text, known, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else "run 'modelport targets' to list them"
        raise UnknownTarget(f"unknown target '{text}': {hint}")


@dataclass(frozen=True)
class TensorSpec:
    """Name, numpy dtype name and shape of one model input or output.

    A dimension is an int (static) or a string naming a dynamic axis ("batch", "seq").
    ``value_range`` records the [min, max] seen in calibration data, so a bundle can make
    realistic synthetic inputs for benchmarking without any data.
    """

    name: str
    dtype: str
    shape: tuple[int | str, ...]
    value_range: tuple[float, float] | None = field(default=None, compare=False)

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.value_range is not None:
            out["value_range"] = list(self.value_range)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        vr = data.get("value_range")
        return cls(
            name=str(data["name"]),
            dtype=str(data["dtype"]),
            shape=tuple(d if isinstance(d, str) else int(d) for d in data["shape"]),
            value_range=tuple(vr) if vr is not None else None,
        )

    def problem_with(self, value: Any) -> str | None:
        """What is wrong with ``value`` as this input (type, dtype, rank, static sizes), in the
        one wording every check uses (a session's feed, a calibration sample); None if fine."""
        import numpy as np

        if not isinstance(value, np.ndarray):
            return f"input '{self.name}' must be a numpy array, got {type(value).__name__}"
        if value.dtype != np.dtype(self.dtype):
            return (f"input '{self.name}' must be {self.dtype}, got {value.dtype}: cast it with "
                    f".astype(np.{self.dtype})")
        if value.ndim != len(self.shape):
            return (f"input '{self.name}' must have rank {len(self.shape)} {list(self.shape)}, "
                    f"got shape {list(value.shape)}")
        for axis, (want, got) in enumerate(zip(self.shape, value.shape, strict=True)):
            if isinstance(want, int) and want != got:
                return (f"input '{self.name}' dimension {axis} must be {want} (static shape "
                        f"{list(self.shape)}), got {got}")
        return None

    def describe(self) -> str:
        dims = "x".join(str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"
