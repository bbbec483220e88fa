"""Static shapes: the one place that reads ``--shape``, fixes a graph's dynamic axes, and pads
or crops feeds to static sizes.

Static-shape artifacts (TFLite, a fixed TensorRT profile, an ONNX Runtime or OpenVINO build
with ``--shape``) take exactly their own sizes; every caller (export, verify, compare, run, the
device bench) fits data through these helpers, and a session refuses any other size with the
one wording of ``TensorSpec.problem_with`` (it names the static shape).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import CalibrationDataError, UsageError

if TYPE_CHECKING:
    from modelport.calibration_data import CalibrationSet
    from modelport.specs import TensorSpec


# -- --shape NAME=DIMS ---------------------------------------------------------------------------
#: the help of ``--shape``, one flag declared by every backend that reads it
SHAPE_HELP = ("fix an input's shape (repeatable), e.g. input_ids=1x128: axes sharing a name "
              "follow. TFLite files are always static (default batch 1, text seq 128); ONNX "
              "Runtime and OpenVINO bundles become static-shape when it is given (inputs of "
              "another shape are padded or refused), with --optimize the static "
              "specialization is a candidate beside the dynamic artifact")
def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``NAME=1x128`` -> ("NAME", (1, 128)); one ``--shape``."""
    name, sep, dims = str(text).partition("=")
    try:
        shape = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or any(d < 1 for d in shape):
        raise UsageError(f"--shape takes NAME=DIMS like input_ids=1x128, got '{text}'")
    return name, shape


def parse_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    return dict(parse_shape(s) for s in items)


def fix_shapes(specs: list[TensorSpec], given: dict[str, Any], defaults: dict[str, int], *,
               needs: str) -> list[TensorSpec]:
    """``specs`` with every dynamic axis fixed: the ``--shape`` of an input first, then by the
    axis' name (a dynamic axis fixed for one input is fixed for every input that shares its
    name: ``--shape input_ids=1x128`` fixes ``attention_mask`` too), then ``defaults`` (axis
    name -> size). An axis still dynamic is a UsageError that says ``needs`` and the flag."""
    from modelport.specs import TensorSpec

    given = {k: tuple(int(d) for d in v) for k, v in (given or {}).items()}
    unknown = sorted(set(given) - {s.name for s in specs})
    if unknown:
        raise UsageError(f"--shape names unknown input(s) {unknown}; the model takes "
                         f"{', '.join(s.describe() for s in specs)}")
    sizes = dict(defaults)
    for spec in specs:
        if spec.name in given:
            for want, got in zip(spec.shape, given[spec.name], strict=False):
                if isinstance(want, str):
                    sizes[want] = got  # --shape wins over the defaults
    out = []
    for spec in specs:
        if spec.name in given:
            shape = given[spec.name]
            if len(shape) != len(spec.shape) or any(
                    isinstance(w, int) and w != g for w, g in zip(spec.shape, shape, strict=True)):
                raise UsageError(f"--shape {spec.name}={'x'.join(map(str, shape))} does not fit "
                                 f"{spec.describe()}")
        else:
            missing = list(dict.fromkeys(d for d in spec.shape
                                         if isinstance(d, str) and d not in sizes))
            if missing:
                raise UsageError(
                    f"input '{spec.name}' has dynamic axes {missing} and {needs}: pass --shape "
                    f"{spec.name}=" + "x".join(str(d) if isinstance(d, int) else "N"
                                               for d in spec.shape))
            shape = tuple(d if isinstance(d, int) else sizes[d] for d in spec.shape)
        out.append(TensorSpec(spec.name, spec.dtype, tuple(shape), spec.value_range))
    return out


def axis_sizes(dynamic: list[TensorSpec], fixed: list[TensorSpec] | dict[str, Any]
               ) -> dict[str, int]:
    """Dynamic axis name -> the size ``fixed`` gives it (``fixed``: specs, or input name ->
    dims as a manifest stores them)."""
    dims = {s.name: s.shape for s in fixed} if isinstance(fixed, list) else fixed
    out: dict[str, int] = {}
    for spec in dynamic:
        for want, got in zip(spec.shape, dims.get(spec.name, ()), strict=False):
            if isinstance(want, str):
                out[want] = int(got)
    return out


def specialize(specs: list[TensorSpec], sizes: dict[str, int]) -> list[TensorSpec]:
    """``specs`` (outputs, say) with the dynamic axes ``sizes`` names made static."""
    from modelport.specs import TensorSpec

    return [TensorSpec(s.name, s.dtype, tuple(sizes.get(d, d) if isinstance(d, str) else d
                                              for d in s.shape), s.value_range) for s in specs]


# -- fitting data to static sizes ----------------------------------------------------------------
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
