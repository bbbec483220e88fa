"""ONNX quantization helpers that ONNX Runtime INT8 and TensorRT Q/DQ share.

Both make their INT8 graphs with ``onnxruntime.quantization``: the same pre-processing, the
same calibration reader over the shared CalibrationSet, the same test for attention's
activation x activation MatMuls.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

#: protobuf cannot serialize a model of 2 GiB or more; over this (with headroom for the graph,
#: the exporter's own line) every file we write keeps its weights as ONNX external data
LARGE_MODEL_BYTES = 1_800_000_000


def is_large(path: Path) -> bool:
    """The graph and its external data files together are too big for one protobuf."""
    return sum(f.stat().st_size for f in [Path(path), *external_files(path)]) > LARGE_MODEL_BYTES


def external_files(path: Path) -> list[Path]:
    """The external data files a model references, next to it (none for a one-file model)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    names = {entry.value for init in graph.initializer
             if init.data_location == onnx.TensorProto.EXTERNAL
             for entry in init.external_data if entry.key == "location"}
    return [Path(path).parent / name for name in sorted(names)]


#: the folder where graphs over 2 GB are kept pre-processed, while ``shared_preprocessing`` runs
_SHARED: dict[str, Path] = {}


@contextlib.contextmanager
def shared_preprocessing(folder: Path) -> Iterator[None]:
    """Within the block a graph over 2 GB is pre-processed once, kept in ``folder`` (the
    caller removes it) and copied for the next build of the same graph: ONNX Runtime INT8 and
    TensorRT Q/DQ both start from it, and each pre-processing of a 2.2 GB model took ~33 s of
    CPU (a copy: ~2 s)."""
    previous = _SHARED.get("dir")
    _SHARED["dir"] = Path(folder)
    try:
        yield
    finally:
        if previous is None:
            _SHARED.pop("dir", None)
        else:
            _SHARED["dir"] = previous


def preprocess(src: Path, dst: Path) -> None:
    """ORT's quantization pre-processing (ONNX shape inference + optimization)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # symbolic shape inference fails on dynamo-exported transformers (FINDINGS.md); ONNX shape
    # inference is enough
    if not is_large(src):
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return
    kept = _kept(src, dst.name)  # keyed on dst's name too: the graph names its data file
    if kept is not None and kept.is_dir():
        for f in kept.iterdir():
            shutil.copyfile(f, dst.parent / f.name)
        return
    quant_pre_process(str(src), str(dst), skip_symbolic_shape=True,
                      save_as_external_data=True, all_tensors_to_one_file=True,
                      external_data_location=dst.name + ".data")
    if kept is not None:
        partial = kept.with_name(kept.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name in (dst.name, dst.name + ".data"):
            if (dst.parent / name).exists():
                shutil.copyfile(dst.parent / name, partial / name)
        partial.rename(kept)  # complete or absent


def _kept(src: Path, name: str) -> Path | None:
    """Where the pre-processed ``src`` is kept (None outside ``shared_preprocessing``): keyed
    on the graph's and its data files' path, size and modification time."""
    folder = _SHARED.get("dir")
    if folder is None:
        return None
    import hashlib

    stats = [(str(Path(f).resolve()), Path(f).stat().st_size, Path(f).stat().st_mtime_ns)
             for f in [src, *external_files(src)]]
    return folder / hashlib.sha256(repr((stats, name)).encode()).hexdigest()[:16]


def activation_matmuls(path: Path) -> list[str]:
    """MatMuls of two activations (attention's Q.K^T and P.V): no weight to quantize, and
    ranges that static calibration captures badly."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in graph.node
            if n.op_type == "MatMul" and not any(i in constants for i in n.input[:2])]


def module_names(path: Path) -> dict[str, str]:
    """Node name -> the torch module it came from (the dynamo exporter records name scopes)."""
    import json

    import onnx

    out = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                try:
                    scopes = json.loads(prop.value.replace("'", '"'))
                except ValueError:
                    continue
                if len(scopes) >= 2 and scopes[-2]:  # the last scope names the op itself
                    out[node.name] = scopes[-2]
    return out


class CalibrationReader:
    """CalibrationDataReader over a CalibrationSet, with a progress bar (ORT and TensorRT Q/DQ)."""

    def __init__(self, calib, desc: str = "calibrating INT8 (onnxruntime)") -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=len(calib), desc=desc, unit="sample", leave=False)
        self._it = iter(calib)

    def get_next(self):
        sample = next(self._it, None)
        if sample is None:
            self._bar.close()
        else:
            self._bar.update(1)
        return sample

    def rewind(self) -> None:  # pragma: no cover - not used by the static quantizer
        pass
