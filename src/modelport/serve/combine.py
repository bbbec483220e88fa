"""How requests to one bundle become one runtime call and how its outputs go back.

- ``concat``: every input and output has the same dynamic batch axis first and no other
  dynamic axis: requests are concatenated on it.
- ``pad``: text models (an ``attention_mask`` input): requests of different lengths are padded
  to the longest -- ``input_ids`` with the tokenizer's pad id, the mask and the other inputs
  with 0 -- and each request's outputs are cut back to its own length.
- ``shape``: other dynamic axes, where padding would change the results: only requests of the
  same shape are combined.
- ``single``: static shapes (no batch axis) or generation graphs: one request per call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.specs import TensorSpec

MASK = "attention_mask"
IDS = "input_ids"


@dataclass(frozen=True)
class BatchPlan:
    kind: str  # concat | pad | shape | single
    batch_axis: str | None = None
    #: dynamic axis names padded in ``pad`` plans (e.g. "seq")
    pad_axes: frozenset[str] = frozenset()
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    pad_id: int = 0
    fills: dict[str, int] = field(default_factory=dict)

    @property
    def batchable(self) -> bool:
        return self.kind != "single"

    def key(self, feeds: Mapping[str, np.ndarray]) -> Any:
        """Requests of one key may share a call (None: this request runs alone)."""
        if self.kind == "single":
            return None
        if self.kind == "concat":
            return "all"
        if self.kind == "pad":  # the padded axes may differ, any static ones may not
            return tuple((s.name, tuple(d for d, want in zip(feeds[s.name].shape[1:], s.shape[1:],
                                                              strict=True)
                                        if want not in self.pad_axes))
                         for s in self.inputs)
        return tuple((s.name, feeds[s.name].shape[1:]) for s in self.inputs)

    def rows(self, feeds: Mapping[str, np.ndarray]) -> int:
        if self.kind == "single":
            return 1
        return int(feeds[self.inputs[0].name].shape[0])

    # -- combine and split ---------------------------------------------------------------------
    def combine(self, requests: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        if len(requests) == 1:
            return dict(requests[0])
        if self.kind != "pad":
            return {s.name: np.concatenate([r[s.name] for r in requests]) for s in self.inputs}
        longest = self._lengths(requests)
        out = {}
        for spec in self.inputs:
            parts = []
            for request in requests:
                value = request[spec.name]
                widths = [(0, 0)] + [(0, longest[d] - n) if d in self.pad_axes else (0, 0)
                                     for d, n in zip(spec.shape[1:], value.shape[1:], strict=True)]
                parts.append(np.pad(value, widths, constant_values=self.fills.get(spec.name, 0)))
            out[spec.name] = np.concatenate(parts)
        return out

    def split(self, requests: Sequence[Mapping[str, np.ndarray]],
              outputs: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        if len(requests) == 1:
            return [dict(outputs)]
        answers, start = [], 0
        for request in requests:
            rows = self.rows(request)
            own = self._lengths([request]) if self.kind == "pad" else {}
            answer = {}
            for spec in self.outputs:
                value = outputs[spec.name][start:start + rows]
                if own:
                    index = tuple(slice(None, own[d]) if d in own else slice(None)
                                  for d in spec.shape[1:])
                    value = value[(slice(None), *index)]
                answer[spec.name] = np.ascontiguousarray(value)
            answers.append(answer)
            start += rows
        return answers

    def _lengths(self, requests: Sequence[Mapping[str, np.ndarray]]) -> dict[str, int]:
        longest: dict[str, int] = {}
        for request in requests:
            for spec in self.inputs:
                for d, n in zip(spec.shape[1:], request[spec.name].shape[1:], strict=True):
                    if d in self.pad_axes:
                        longest[d] = max(longest.get(d, 0), int(n))
        return longest


def plan_for(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], *, pad_id: int = 0,
             solo: bool = False) -> BatchPlan:
    """The plan a bundle's specs allow (see the module docstring)."""
    if solo or not inputs or not outputs:
        return BatchPlan("single")
    firsts = {s.shape[0] if s.shape else None for s in (*inputs, *outputs)}
    batch = next(iter(firsts))
    if len(firsts) != 1 or not isinstance(batch, str):
        return BatchPlan("single")
    other = {d for s in (*inputs, *outputs) for d in s.shape[1:] if isinstance(d, str)}
    if batch in other:
        return BatchPlan("single")
    common = {"batch_axis": batch, "inputs": tuple(inputs), "outputs": tuple(outputs)}
    if not other:
        return BatchPlan("concat", **common)
    mask = next((s for s in inputs if s.name == MASK), None)
    pad_axes = frozenset(d for d in (mask.shape[1:] if mask else ()) if isinstance(d, str))
    if pad_axes and other <= pad_axes:
        return BatchPlan("pad", pad_axes=pad_axes, pad_id=pad_id,
                         fills={IDS: pad_id}, **common)
    return BatchPlan("shape", **common)
