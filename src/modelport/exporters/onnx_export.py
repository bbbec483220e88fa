"""torch.onnx.export with the dynamo exporter, a TorchScript fallback, and external data >2 GB."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.errors import ExportError, ModelLoadError, UnsupportedOp
from modelport.models import PreparedModel, tile_inputs
from modelport.specs import TensorSpec
from modelport.terminal import exception_line

log = logging.getLogger("modelport")

#: protobuf's hard limit is 2 GiB; leave headroom for the graph itself.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


@dataclass
class OnnxArtifact:
    path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    exporter: str  # "dynamo" | "torchscript" | "given"
    opset: int
    external_data: bool = False
    validation: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    #: the export cache's key, and "hit" when the graph came from it ("" when not cached)
    cache_key: str = ""
    cache: str = ""


def export_onnx(
    model: PreparedModel,
    path: Path,
    *,
    opset: int | None = None,
    simplify: bool = False,
    from_cache: bool = True,
) -> OnnxArtifact:
    """Export ``model.module`` to ``path`` (or copy a given .onnx), with dynamic axes from its
    specs; an export of the same model done before comes from the export cache unless
    ``from_cache`` is False (the fresh export is stored either way)."""
    from modelport.exporters import export_cache
    from modelport.exporters.onnx_io import read_io_specs

    path = Path(path)
    start = time.perf_counter()
    if model.onnx_path is not None:
        _copy_onnx(model.onnx_path, path)
        inputs, outputs = read_io_specs(path)
        return OnnxArtifact(path, inputs, outputs, "given", _opset_of(path),
                            seconds=time.perf_counter() - start)
    key = export_cache.export_key(model, opset=opset, simplify=simplify)
    meta = export_cache.lookup(key, path) if key and from_cache else None
    if meta is not None:
        inputs, outputs = read_io_specs(path)
        log.info("reusing the ONNX export of %s from the export cache (%s; "
                 "MODELPORT_EXPORT_CACHE=0 turns it off)", model.name, key[:12])
        return OnnxArtifact(path, inputs, outputs, meta["exporter"], _opset_of(path),
                            seconds=time.perf_counter() - start, cache_key=key, cache="hit")
    import torch

    # the dynamo exporter logs a warning per missing optional op library (torchvision)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    external = _parameter_bytes(model.module) > EXTERNAL_DATA_THRESHOLD
    # dynamo specializes dimensions of size 0/1, so export with every dynamic axis >= 2
    example = tile_inputs(model.example_inputs, model.inputs, 2)
    kwargs = {k: torch.from_numpy(v) for k, v in example.items()}
    exporter = "dynamo"
    try:
        _export_dynamo(model, kwargs, path, opset=opset, external=external)
    except Exception as dynamo_exc:  # noqa: BLE001 - the fallback reports the first failure too
        first = exception_line(dynamo_exc)
        log.warning("dynamo exporter failed (%s); falling back to the TorchScript exporter", first)
        exporter = "torchscript"
        try:
            # the TorchScript exporter prints its whole IR graph on failure: keep stdout clean
            with _quiet_stdout():
                _export_torchscript(model, kwargs, path, opset=opset, external=external)
        except Exception as ts_exc:  # noqa: BLE001
            _raise_unsupported_op(model, example, dynamo_exc, ts_exc)
            raise ExportError(
                f"ONNX export of {model.name} failed with both exporters: dynamo: {first}; "
                f"torchscript: {exception_line(ts_exc)}"
            ) from None
    if simplify:
        _simplify(path, external)
    inputs, outputs = read_io_specs(path)
    seconds = time.perf_counter() - start
    if key and not external:
        export_cache.store(key, path, {"exporter": exporter, "seconds": seconds})
    return OnnxArtifact(path, inputs, outputs, exporter, _opset_of(path), external,
                        seconds=seconds, cache_key=key or "")


def _raise_unsupported_op(model, example, *errors: BaseException) -> None:
    """If the exporters name the op they could not convert, say it and the module that uses it."""
    from modelport.exporters.diagnose import failing_op, locate_op

    op = failing_op(*(str(e) for e in errors))
    if op is None:
        return
    where = locate_op(model.module, example, op)
    raise UnsupportedOp(
        f"the ONNX exporters cannot convert op '{op}'"
        + (f" used in module {where}" if where else "")
        + f" of {model.name}: rewrite it with standard torch ops, register an ONNX translation "
        "for it (torch.onnx.export(custom_translation_table=...)), or export the .onnx yourself "
        "and pass that file"
    )


def _export_dynamo(model, kwargs, path: Path, *, opset, external: bool) -> None:
    import torch

    if model.exported_program is not None:
        target, dynamic_shapes = model.exported_program, None
    else:
        dims: dict[str, Any] = {}
        dynamic_shapes = {
            spec.name: {axis: dims.setdefault(name, torch.export.Dim(name))
                        for axis, name in spec.dynamic_axes.items()}
            for spec in model.inputs
        }
        target = model.module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            target,
            args=(),
            kwargs=kwargs if model.exported_program is None else None,
            f=str(path),
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            input_names=[s.name for s in model.inputs],
            output_names=model.output_names,
            opset_version=opset,
            external_data=external,
            verbose=False,
        )


def _export_torchscript(model, kwargs, path: Path, *, opset, external: bool) -> None:
    import torch

    names = [s.name for s in model.inputs]
    dynamic_axes = {s.name: s.dynamic_axes for s in model.inputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.module,
            args=tuple(kwargs[n] for n in names),
            f=str(path),
            dynamo=False,
            input_names=names,
            output_names=model.output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset or 17,
        )
    if external:
        _save(path, _load(path), external=True)


def _simplify(path: Path, external: bool) -> None:
    import onnxslim

    slimmed = onnxslim.slim(_load(path))
    _save(path, slimmed, external=external)


def _load(path: Path):
    import onnx

    return onnx.load(str(path))


def _save(path: Path, proto, *, external: bool) -> None:
    import onnx

    onnx.save(proto, str(path), save_as_external_data=external,
              location=path.name + ".data" if external else None)


def _copy_onnx(src: Path, dst: Path) -> None:
    import onnx

    try:
        proto = onnx.load(str(src))
        onnx.checker.check_model(proto)
    except Exception as exc:  # noqa: BLE001 - protobuf/checker raise many types for bad files
        raise ModelLoadError(  # the user's file, not our export: exit 2
            f"'{src}' is not a valid ONNX model ({exception_line(exc)}); re-export it"
        ) from None
    _save(dst, proto, external=proto.ByteSize() > EXTERNAL_DATA_THRESHOLD)


def _opset_of(path: Path) -> int:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _parameter_bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


@contextlib.contextmanager
def _quiet_stdout():
    """Silence stdout at the file-descriptor level (C++ prints bypass sys.stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
