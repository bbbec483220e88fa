"""Read an ONNX graph's inputs and outputs as TensorSpecs (dim_param -> dynamic axis name)."""

from __future__ import annotations

from pathlib import Path

from modelport.errors import ModelLoadError
from modelport.specs import TensorSpec


def read_io_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    import onnx
    from onnx import helper

    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(b"version https://git-lfs"):
        raise ModelLoadError(
            f"'{path}' is a Git LFS pointer, not the model: run 'git lfs pull' (or download the "
            "file itself)"
        )
    if not head:
        raise ModelLoadError(f"'{path}' is empty: re-export or re-download it")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise ModelLoadError(
            f"'{path}' is not a readable ONNX model ({type(exc).__name__}); re-export it"
        ) from None
    initializers = {i.name for i in model.graph.initializer}
    _check_external_data(path, model)

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


def _check_external_data(path: Path, model) -> None:
    """Weights kept next to the .onnx (models over 2 GB) must be there and stay inside its folder."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    for tensor in model.graph.initializer:
        if not uses_external_data(tensor):
            continue
        location = ExternalDataInfo(tensor).location
        pure = Path(location)
        if pure.is_absolute() or ".." in pure.parts:
            raise ModelLoadError(
                f"'{path}': tensor '{tensor.name}' points at weights outside its folder "
                f"('{location}'); refused"
            )
        if not (path.parent / location).is_file():
            raise ModelLoadError(
                f"'{path}' keeps its weights in '{location}', which is missing: copy it next to "
                "the .onnx"
            )
