"""Read an ONNX graph's inputs and outputs as TensorSpecs (dim_param -> dynamic axis name)."""

from __future__ import annotations

from pathlib import Path

from modelport.errors import ModelLoadError
from modelport.specs import TensorSpec


def read_io_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelLoadError(
            f"'{path}' is not a readable ONNX model ({type(exc).__name__}); re-export it"
        ) from None
    initializers = {i.name for i in model.graph.initializer}

    def spec(value) -> TensorSpec:
        tensor_type = value.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
        dims: list[int | str] = []
        for i, dim in enumerate(tensor_type.shape.dim):
            if dim.HasField("dim_value"):
                dims.append(int(dim.dim_value))
            else:
                dims.append(dim.dim_param or f"{value.name}_dim{i}")
        return TensorSpec(value.name, dtype, tuple(dims))

    inputs = [spec(v) for v in model.graph.input if v.name not in initializers]
    outputs = [spec(v) for v in model.graph.output]
    if not inputs or not outputs:
        raise ModelLoadError(f"'{path}' has no graph inputs or outputs")
    return inputs, outputs
