"""The Open Inference Protocol V2 wire format: JSON tensors and Triton's binary-tensor extension
(``Inference-Header-Content-Length``: a JSON header, then each binary tensor's raw bytes in
order; BYTES elements as a 4-byte little-endian length and the bytes). Nothing is unpickled:
tensors become numpy arrays with ``np.frombuffer`` or ``np.asarray`` of JSON lists."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: V2 datatype -> numpy dtype (BYTES: object arrays of bytes)
DATATYPES: dict[str, Any] = {
    "BOOL": np.dtype(bool), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
HEADER_LENGTH = "Inference-Header-Content-Length"
#: the deepest JSON a request may nest (a V2 request needs about 4 + the tensor's rank)
MAX_DEPTH = 64


class ProtocolError(Exception):
    """A request the server refuses: HTTP ``status`` and a message naming the problem."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def datatype_of(dtype: Any) -> str:
    """numpy dtype (or its name) -> V2 datatype."""
    dtype = np.dtype(dtype)
    for name, known in DATATYPES.items():
        if known == dtype:
            return name
    if dtype.kind in "SU":
        return "BYTES"
    raise ProtocolError(f"dtype {dtype} has no Open Inference Protocol datatype", 500)


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    id: str | None = None
    #: requested output name -> binary or not (None: every output)
    outputs: dict[str, bool] | None = None
    binary_output: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """The body of ``POST /v2/models/{name}/infer`` -> named numpy arrays."""
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise ProtocolError(f"{HEADER_LENGTH} must be an integer, got "
                                f"'{header_length[:40]}'") from None
        if not 0 < size <= len(body):
            raise ProtocolError(f"{HEADER_LENGTH} {size} is outside the body's {len(body)} bytes")
        head, tail = body[:size], memoryview(body)[size:]
    else:
        head, tail = body, memoryview(b"")
    _check_depth(head)
    try:
        doc = json.loads(head)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"the request is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("the request's JSON is nested too deeply") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise ProtocolError("the request must be a JSON object with a non-empty 'inputs' list")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for item in doc["inputs"]:
        name, datatype, shape = _tensor_header(item)
        if name in inputs:
            raise ProtocolError(f"input '{name}' is given twice")
        params = item.get("parameters") or {}
        if "binary_data_size" in params:
            size = params["binary_data_size"]
            if not isinstance(size, int) or size < 0 or offset + size > len(tail):
                raise ProtocolError(f"input '{name}': binary_data_size {size} is beyond the "
                                    f"{len(tail)} bytes after the JSON header")
            inputs[name] = _from_bytes(name, datatype, shape, tail[offset:offset + size])
            offset += size
        elif "data" in item:
            inputs[name] = _from_json(name, datatype, shape, item["data"])
        else:
            raise ProtocolError(f"input '{name}' has neither 'data' nor binary_data_size")
    if offset != len(tail):
        raise ProtocolError(f"{len(tail) - offset} bytes after the JSON header belong to no input")
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise ProtocolError("'parameters' must be a JSON object")
    return InferRequest(inputs, id=_request_id(doc), outputs=_requested(doc, params),
                        binary_output=bool(params.get("binary_data_output", False)),
                        parameters=params)


def _check_depth(head: bytes) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH before parsing it: json's C decoder recurses
    per level, and a library that raised the recursion limit (converters do) turns a body of
    '[' * 10**5 into a stack overflow. Brackets inside strings count too (an over-estimate
    that only a text of dozens of unclosed brackets reaches)."""
    raw = np.frombuffer(head, np.uint8)
    opens = (raw == ord("[")) | (raw == ord("{"))
    if int(np.count_nonzero(opens)) <= MAX_DEPTH:
        return
    closes = (raw == ord("]")) | (raw == ord("}"))
    depth = 0
    for start in range(0, len(raw), 1 << 20):  # 1 MiB at a time: bounded temporaries
        steps = opens[start:start + (1 << 20)].astype(np.int32)
        steps -= closes[start:start + (1 << 20)]
        running = np.cumsum(steps) + depth
        if int(running.max()) > MAX_DEPTH:
            raise ProtocolError(f"the request's JSON is nested more than {MAX_DEPTH} levels "
                                "deep (send nested tensors flat, or as binary data)")
        depth = int(running[-1])


def _request_id(doc: Mapping[str, Any]) -> str | None:
    rid = doc.get("id")
    return None if rid is None else str(rid)[:256]


def _requested(doc: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, bool] | None:
    wanted = doc.get("outputs")
    if wanted is None:
        return None
    if not isinstance(wanted, list):
        raise ProtocolError("'outputs' must be a list of {\"name\": ...} objects")
    default = bool(params.get("binary_data_output", False))
    out = {}
    for item in wanted:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError("each of 'outputs' must be an object with a 'name'")
        binary = (item.get("parameters") or {}).get("binary_data", default)
        out[item["name"]] = bool(binary)
    return out


def _tensor_header(item: Any) -> tuple[str, str, tuple[int, ...]]:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ProtocolError("each input must be an object with 'name', 'datatype', 'shape'")
    name, datatype, shape = item["name"], item.get("datatype"), item.get("shape")
    if datatype not in DATATYPES:
        raise ProtocolError(f"input '{name}': datatype {datatype!r} is not one of "
                            f"{', '.join(DATATYPES)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                              and d >= 0 for d in shape):
        raise ProtocolError(f"input '{name}': shape must be a list of non-negative integers, "
                            f"got {shape!r}")
    return name, datatype, tuple(shape)


def _from_json(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray:
    count = math.prod(shape)
    flat = _flatten(data)
    if len(flat) != count:
        raise ProtocolError(f"input '{name}': shape {list(shape)} holds {count} elements, "
                            f"'data' has {len(flat)}")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise ProtocolError(f"input '{name}': BYTES data must be strings in JSON")
        array = np.empty(count, dtype=object)
        array[:] = [v.encode("utf-8") for v in flat]
        return array.reshape(shape)
    kind = "numbers" if datatype != "BOOL" else "booleans"
    if not all(isinstance(v, (int, float)) for v in flat):
        raise ProtocolError(f"input '{name}': {datatype} data must be {kind}")
    try:
        return np.asarray(flat, dtype=DATATYPES[datatype]).reshape(shape)
    except (ValueError, OverflowError) as exc:
        raise ProtocolError(f"input '{name}': data does not fit {datatype}: {exc}") from None


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise ProtocolError("tensor 'data' must be a JSON list")
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            out.append(value)
        else:
            stack.pop()
    return out


def _from_bytes(name: str, datatype: str, shape: tuple[int, ...], raw: memoryview) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        items, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise ProtocolError(f"input '{name}': a BYTES element's length is cut short")
            (length,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + length > len(raw):
                raise ProtocolError(f"input '{name}': a BYTES element runs past its data")
            items.append(bytes(raw[offset:offset + length]))
            offset += length
        if len(items) != count:
            raise ProtocolError(f"input '{name}': shape {list(shape)} holds {count} elements, "
                                f"the binary data has {len(items)}")
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = DATATYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise ProtocolError(f"input '{name}': shape {list(shape)} of {datatype} takes "
                            f"{count * dtype.itemsize} bytes, the binary data has {len(raw)}")
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)


def encode_response(model: str, version: str, request: InferRequest,
                    outputs: Mapping[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers (binary outputs after the JSON header)."""
    wanted = request.outputs
    if wanted is not None:
        unknown = sorted(set(wanted) - set(outputs))
        if unknown:
            raise ProtocolError(f"unknown output(s) {unknown}; the model gives "
                                f"{', '.join(outputs)}")
    chunks: list[bytes] = []
    described = []
    for name, value in outputs.items():
        if wanted is not None and name not in wanted:
            continue
        binary = wanted[name] if wanted is not None else request.binary_output
        value = np.asarray(value)
        item: dict[str, Any] = {"name": name, "datatype": datatype_of(value.dtype),
                                "shape": list(value.shape)}
        if binary:
            raw = _to_bytes(value)
            item["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif item["datatype"] == "BYTES":
            item["data"] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                            for v in value.reshape(-1)]
        else:
            item["data"] = value.reshape(-1).tolist()
        described.append(item)
    doc: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": described}
    if request.id is not None:
        doc["id"] = request.id
    head = json.dumps(doc, separators=(",", ":")).encode()
    if not chunks:
        return head, {"Content-Type": "application/json"}
    return (b"".join([head, *chunks]),
            {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(head))})


def _to_bytes(value: np.ndarray) -> bytes:
    if value.dtype == object or value.dtype.kind in "SU":
        parts = []
        for v in value.reshape(-1):
            raw = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts += [struct.pack("<I", len(raw)), raw]
        return b"".join(parts)
    return np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).tobytes()


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
