"""Type checks of every manifest field a reader touches, so a hand-edited or hostile manifest
ends in one BundleError line, never a KeyError or TypeError deep inside verify or a session.

Hand-written rather than JSON Schema: a device with only the runtime installed has no
``jsonschema``; manifest.schema.json documents the same fields for people and tools.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from modelport.errors import BundleError
from modelport.metrics import Budget

#: dtypes a tensor in a bundle may have (numbers and booleans; never object or strings)
_DTYPE_KINDS = "biuf"


def check_tensor_specs(manifest: dict[str, Any], where: str) -> None:
    for key in ("inputs", "outputs"):
        names: set[str] = set()
        if not manifest[key]:
            raise BundleError(f"{where}: '{key}' is empty")
        for item in manifest[key]:
            if not _spec_ok(item) or item["name"] in names:
                raise BundleError(f"{where}: invalid entry in '{key}': {_short(item)}")
            names.add(item["name"])


def check_graphs(manifest: dict[str, Any], where: str, inside: Any) -> None:
    """A multi-graph bundle's ``graphs`` (schema 2): name -> {file, inputs, outputs}; every
    file inside the bundle and covered by a checksum in ``files``."""
    graphs = manifest.get("graphs")
    if graphs is None:
        return
    if not isinstance(graphs, dict) or not graphs:
        raise BundleError(f"{where}: invalid field 'graphs'")
    for name, graph in graphs.items():
        if not isinstance(graph, dict) or not isinstance(graph.get("file"), str):
            raise BundleError(f"{where}: invalid entry '{name}' in 'graphs'")
        inside(graph["file"])
        if graph["file"] not in manifest["files"]:
            raise BundleError(f"{where}: graph '{name}' file '{graph['file']}' is not listed "
                              "in files")
        check_tensor_specs(graph, f"{where} (graph '{name}')")


def _spec_ok(item: Any) -> bool:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        return False
    try:
        dtype = np.dtype(item.get("dtype"))
    except (TypeError, ValueError):
        return False
    if not isinstance(item.get("dtype"), str) or dtype.kind not in _DTYPE_KINDS:
        return False
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(
        (isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31)
        or (isinstance(d, str) and d) for d in shape
    ):
        return False
    vr = item.get("value_range")
    return vr is None or (
        isinstance(vr, list) and len(vr) == 2 and all(_number(v) for v in vr) and vr[0] <= vr[1]
    )


def check_optional_fields(manifest: dict[str, Any], where: str) -> None:
    """Fields a reader uses when present: each must have the documented type."""
    if not isinstance(manifest["model"].get("task", "generic"), str):
        raise BundleError(f"{where}: invalid field 'model.task'")
    samples = manifest.get("samples")
    if samples is not None and not isinstance(samples, str):
        raise BundleError(f"{where}: invalid field 'samples'")
    pre = manifest.get("preprocessing")
    if pre is not None:
        if not isinstance(pre, dict):
            raise BundleError(f"{where}: invalid field 'preprocessing'")
        if pre.get("tokenizer") is not None and not isinstance(pre["tokenizer"], str):
            raise BundleError(f"{where}: invalid field 'preprocessing.tokenizer'")
        length = pre.get("max_length", 128)
        if not isinstance(length, int) or isinstance(length, bool) or not 0 < length < 2**20:
            raise BundleError(f"{where}: invalid field 'preprocessing.max_length'")
    dims = manifest.get("bench_dims")
    if dims is not None and not (isinstance(dims, dict) and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in dims.values())):
        raise BundleError(f"{where}: invalid field 'bench_dims'")
    acc = manifest.get("accuracy")
    if acc is None:
        return
    if not isinstance(acc, dict):
        raise BundleError(f"{where}: invalid field 'accuracy'")
    budget = acc.get("budget", {})
    known = {f.name for f in dataclasses.fields(Budget)}  # what this version can enforce
    if not isinstance(budget, dict) or not set(budget) <= known \
            or not all(v is None or _number(v) for v in budget.values()):
        raise BundleError(f"{where}: invalid field 'accuracy.budget'")
    metrics = acc.get("metrics")
    if metrics is not None and not isinstance(metrics, dict):
        raise BundleError(f"{where}: invalid field 'accuracy.metrics'")
    if not isinstance(acc.get("allowed_drop", False), bool):
        raise BundleError(f"{where}: invalid field 'accuracy.allowed_drop'")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(
        np.isfinite(value))


def _short(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 120 else text[:117] + "..."
