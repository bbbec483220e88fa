"""Static-shape specialization of an ONNX Runtime or OpenVINO build (``--shape NAME=DIMS``).

The artifact's files stay the graph the build made (dynamic axes); the fixed shapes are a
runtime setting (``build.runtime_settings.shapes``, input name -> dims) that the backend's
``load`` re-applies before the runtime optimizes the graph: ONNX Runtime as free-dimension
overrides (``SessionOptions.add_free_dimension_override_by_name``), OpenVINO as
``Model.reshape`` before ``compile_model``. Why at load and not in the file: the INT8 build
(calibration, NNCF) runs once on the dynamic graph with the calibration samples at their own
lengths, and the recipe search's static candidate is the same files loaded another way (one
build, not two). What the runtime optimizes is the same either way: on MiniLM INT8, ONNX
Runtime's optimized graph with the overrides has the op counts of a graph whose inputs were
made static with ONNX shape inference re-run (150 nodes, 180 dynamic: shape subgraphs folded;
experiments/static_shapes.py), and OpenVINO compiles a static model in both cases.

The bundle's manifest records the static inputs (and the outputs with the same axes fixed), so
every caller fits feeds through ``modelport.shapes`` as for TFLite: text is padded to the fixed
length, anything else of another shape is refused in one line naming the static shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelport.specs import TensorSpec

#: what the one-line error says when an axis is left dynamic
NEEDS = "a static-shape build fixes every dynamic axis"


def requested(model: Any, options: Any) -> list[TensorSpec] | None:
    """The model's inputs at the shapes ``--shape`` fixes (``options``: the backend's typed
    options), checked against the graph; None when no shape was given."""
    given = getattr(options, "shapes", None)
    if not given:
        return None
    from modelport.shapes import fix_shapes

    return fix_shapes(model.onnx_artifact.inputs, dict(given), {}, needs=NEEDS)


def as_setting(fixed: list[TensorSpec]) -> dict[str, list[int]]:
    """Static input specs -> the runtime setting (input name -> dims)."""
    return {s.name: [int(d) for d in s.shape] for s in fixed}


def specialize_artifact(artifact: Any, model: Any, shapes: Mapping[str, Any]) -> Any:
    """Make ``artifact`` (a dynamic build of ``model``) static at ``shapes``: its declared
    inputs and outputs (what the manifest records), ``build.static_shapes`` and the runtime
    setting its ``load`` re-applies."""
    from modelport.shapes import axis_sizes, specialize

    dyn_in = artifact.inputs or model.onnx_artifact.inputs
    dyn_out = artifact.outputs or model.onnx_artifact.outputs
    sizes = axis_sizes(dyn_in, dict(shapes))
    artifact.inputs = static_inputs(dyn_in, shapes)
    artifact.outputs = specialize(dyn_out, sizes)
    setting = {k: [int(d) for d in v] for k, v in shapes.items()}
    artifact.info["static_shapes"] = setting
    for where in (artifact.info, artifact.session_options):
        where["runtime_settings"] = {**(where.get("runtime_settings") or {}), "shapes": setting}
    return artifact


def static_inputs(inputs: list[TensorSpec], shapes: Mapping[str, Any] | None
                  ) -> list[TensorSpec]:
    """``inputs`` with the dims ``shapes`` fixes (a session loaded with the setting declares
    the static shape, so its feed check names it); unchanged when ``shapes`` is empty."""
    if not shapes:
        return list(inputs)
    from modelport.shapes import axis_sizes, specialize

    sizes = axis_sizes(inputs, dict(shapes))
    return [TensorSpec(s.name, s.dtype, tuple(int(d) for d in shapes[s.name]), s.value_range)
            if s.name in shapes else specialize([s], sizes)[0] for s in inputs]


def free_dimension_overrides(path: Path | str, shapes: Mapping[str, Any]) -> dict[str, int]:
    """ONNX Runtime: dynamic axis name -> size, from the graph's own input dims (the names it
    overrides by). An axis the graph leaves unnamed cannot be overridden: a BuildError."""
    import onnx

    from modelport.errors import BuildError

    graph = onnx.load(str(path), load_external_data=False).graph
    out: dict[str, int] = {}
    for value in graph.input:
        if value.name not in shapes:
            continue
        dims = value.type.tensor_type.shape.dim
        for axis, (dim, size) in enumerate(zip(dims, shapes[value.name], strict=False)):
            if dim.HasField("dim_value"):
                continue
            if not dim.dim_param:
                raise BuildError(f"input '{value.name}' axis {axis} is dynamic without a name: "
                                 "ONNX Runtime fixes dynamic axes by name; re-export the model "
                                 "with named dynamic axes or without --shape")
            out[dim.dim_param] = int(size)
    return out


def reshaped_ov_model(path: Path | str, shapes: Mapping[str, Any]) -> Any:
    """OpenVINO: the IR read and reshaped to ``shapes`` (compiled static by the caller)."""
    import openvino as ov

    model = ov.Core().read_model(str(path))
    model.reshape({name: ov.PartialShape([int(d) for d in dims])
                   for name, dims in shapes.items()})
    return model


def specialized_shapes(value: Any) -> list[dict[str, list[int]]]:
    """The runtime setting ``specialize`` as stored (one mapping, or a list of them: bundles
    before several fast paths stored one) -> a list of name -> dims mappings."""
    if not value:
        return []
    many = value if isinstance(value, (list, tuple)) else [value]
    return [{str(k): [int(d) for d in dims] for k, dims in dict(v).items()} for v in many]
