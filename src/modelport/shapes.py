"""Fitting feeds to an artifact's shapes: the one place that pads or crops to static sizes.

Static-shape artifacts (TFLite, a fixed TensorRT profile) take exactly their own sizes; every
caller (export, verify, compare, run, the device bench) fits data through these helpers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import CalibrationDataError

if TYPE_CHECKING:
    from modelport.calibration_data import CalibrationSet
    from modelport.specs import TensorSpec


def static_batch(inputs: list[TensorSpec] | None, default: Any) -> Any:
    """The artifact's fixed batch size, or ``default`` when axis 0 is dynamic (or unknown)."""
    if not inputs:
        return default
    first = inputs[0].shape[0] if inputs[0].shape else None
    return first if isinstance(first, int) else default


def fit_arrays(feeds: dict[str, np.ndarray], inputs: list[TensorSpec] | None) -> dict[str, np.ndarray]:
    """Zero-pad non-batch axes up to an artifact's static sizes (text: pad id 0, mask 0).

    Data longer than a static axis is an error (cropping would change the answer silently),
    unless all it holds there is padding (zeros: the bench pool is padded to the model's bench
    length, a TFLite file may be built shorter)."""
    if not inputs:
        return feeds
    out = dict(feeds)
    for spec in inputs:
        array = feeds[spec.name]
        pads = [(0, 0)]
        for axis, want in enumerate(spec.shape[1:], start=1):
            have = array.shape[axis]
            if isinstance(want, int) and have > want and not np.take(
                    array, range(want, have), axis=axis).any():
                array = np.take(array, range(want), axis=axis)
                have = want
            if isinstance(want, int) and have > want:
                raise CalibrationDataError(
                    f"input '{spec.name}' axis {axis} is {have} in the data but the artifact is "
                    f"fixed at {want}; export with a larger --shape"
                )
            pads.append((0, want - have) if isinstance(want, int) else (0, 0))
        out[spec.name] = np.pad(array, pads) if any(p != (0, 0) for p in pads) else array
    return out


def fit_set(data: CalibrationSet, inputs: list[TensorSpec]) -> CalibrationSet:
    """``fit_arrays`` over every sample of a set (a no-op for fully dynamic inputs)."""
    from modelport.calibration_data import CalibrationSet

    if all(isinstance(d, str) for s in inputs for d in s.shape[1:]):
        return data
    samples = [fit_arrays(s, inputs) for s in data.samples]
    return CalibrationSet(samples, labels=data.labels, texts=data.texts, source=data.source)


def crop_or_pad(feeds: dict[str, np.ndarray], specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Crop or zero-pad every axis (batch included) to a static shape: for building an example
    input of a static graph from arbitrary sample data, where cropping is intended."""
    out = {}
    for spec in specs:
        array = feeds[spec.name]
        array = array[tuple(slice(0, d) for d in spec.shape)]
        pads = [(0, want - have) for want, have in zip(spec.shape, array.shape, strict=True)]
        out[spec.name] = np.ascontiguousarray(np.pad(array, pads) if any(p[1] for p in pads)
                                              else array).astype(spec.dtype)
    return out
