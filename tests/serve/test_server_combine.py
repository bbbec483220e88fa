"""The server's pure parts: how requests combine into one call and split back (every plan),
and the V2 wire format (JSON, binary tensors, BYTES), without a runtime or a socket."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from modelport.serve.combine import plan_for
from modelport.serve.protocol import ProtocolError, encode_response, parse_request
from modelport.specs import TensorSpec as T

TEXT_IN = [T("input_ids", "int64", ("batch", "seq")), T("attention_mask", "int64", ("batch", "seq"))]
TEXT_OUT = [T("pooled", "float32", ("batch", 4)), T("hidden", "float32", ("batch", "seq", 2))]


def _text(ids: list[int]) -> dict[str, np.ndarray]:
    return {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}


def test_pad_plan_pads_with_the_pad_id_and_cuts_outputs_back_to_each_length():
    plan = plan_for(TEXT_IN, TEXT_OUT, pad_id=7)
    assert plan.kind == "pad"
    a, b = _text([1, 2]), _text([3, 4, 5, 6])
    assert plan.key(a) == plan.key(b)  # different lengths share a call
    combined = plan.combine([a, b])
    np.testing.assert_array_equal(combined["input_ids"], [[1, 2, 7, 7], [3, 4, 5, 6]])
    np.testing.assert_array_equal(combined["attention_mask"], [[1, 1, 0, 0], [1, 1, 1, 1]])
    outputs = {"pooled": np.arange(8, dtype=np.float32).reshape(2, 4),
               "hidden": np.arange(16, dtype=np.float32).reshape(2, 4, 2)}
    first, second = plan.split([a, b], outputs)
    assert first["hidden"].shape == (1, 2, 2) and second["hidden"].shape == (1, 4, 2)
    np.testing.assert_array_equal(first["hidden"][0], outputs["hidden"][0, :2])
    np.testing.assert_array_equal(second["pooled"][0], outputs["pooled"][1])


def test_plans_follow_the_specs():
    image = [T("x", "float32", ("batch", 3, 8, 8))]
    logits = [T("y", "float32", ("batch", 10))]
    assert plan_for(image, logits).kind == "concat"
    assert plan_for([T("x", "float32", (1, 3, 8, 8))], [T("y", "float32", (1, 10))]).kind == \
        "single"  # static shapes: one by one
    assert plan_for(TEXT_IN, TEXT_OUT, solo=True).kind == "single"  # generation graphs
    # another dynamic axis and no attention mask: padding could change results, group by shape
    audio = plan_for([T("v", "float32", ("batch", "samples"))], logits)
    assert audio.kind == "shape"
    one, two = {"v": np.zeros((1, 5), np.float32)}, {"v": np.zeros((1, 6), np.float32)}
    assert audio.key(one) != audio.key(two) and audio.key(one) == audio.key(dict(one))
    # an output whose first axis is not the batch cannot be split back
    assert plan_for(image, [T("y", "float32", (10,))]).kind == "single"


def test_binary_request_with_bytes_and_numbers_and_a_binary_response():
    ids = np.array([[1, 2, 3]], np.int64)
    texts = [b"hello", "h\u00e9".encode()]
    packed = b"".join(struct.pack("<I", len(t)) + t for t in texts)
    head = json.dumps({"id": "r1", "inputs": [
        {"name": "ids", "datatype": "INT64", "shape": [1, 3],
         "parameters": {"binary_data_size": ids.nbytes}},
        {"name": "text", "datatype": "BYTES", "shape": [2],
         "parameters": {"binary_data_size": len(packed)}}],
        "parameters": {"binary_data_output": True}}).encode()
    request = parse_request(head + ids.tobytes() + packed, str(len(head)))
    np.testing.assert_array_equal(request.inputs["ids"], ids)
    assert list(request.inputs["text"]) == texts
    body, headers = encode_response("m", "1", request, {"y": np.array([[0.5, 1.5]], np.float32)})
    size = int(headers["Inference-Header-Content-Length"])
    doc = json.loads(body[:size])
    assert doc["id"] == "r1" and doc["outputs"][0]["parameters"]["binary_data_size"] == 8
    np.testing.assert_array_equal(np.frombuffer(body[size:], np.float32), [0.5, 1.5])


def test_json_request_nested_data_and_json_response():
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2],
                                   "data": [[1, 2], [3, 4]]}]}).encode()
    request = parse_request(body, None)
    assert request.inputs["x"].dtype == np.float32 and request.inputs["x"].shape == (2, 2)
    out, headers = encode_response("m", "1", request, {"y": request.inputs["x"]})
    assert headers["Content-Type"] == "application/json"
    assert json.loads(out)["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("head,tail,words", [
    (b"[]", None, "non-empty 'inputs' list"),
    (b'{"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]}', None,
     "datatype 'FP99'"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]}', None,
     "non-negative integers"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]}', None,
     "must be numbers"),
    ((b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], '
     b'"parameters": {"binary_data_size": 8}}]}'), b"\0" * 4, "binary_data_size 8 is beyond"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}', b"xx",
     "2 bytes after the JSON header belong to no input"),
    ((b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], '
     b'"parameters": {"binary_data_size": 6}}]}'), struct.pack("<I", 9) + b"ab",
     "runs past its data"),
])
def test_malformed_requests_name_the_problem(head, tail, words):
    header = None if tail is None else str(len(head))
    with pytest.raises(ProtocolError) as info:
        parse_request(head + (tail or b""), header)
    assert words in str(info.value) and info.value.status == 400


def test_json_nested_too_deeply_is_a_400_not_a_crash():
    """Refused before json.loads recurses (with a raised recursion limit it would overflow
    the C stack); a legitimately nested tensor still parses."""
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10**6))  # what a converter library may have done
    try:
        with pytest.raises(ProtocolError, match="nested more than 64 levels"):
            parse_request(b"[" * 200_000, None)
    finally:
        sys.setrecursionlimit(limit)
    deep = np.zeros((1,) * 8, np.float32).tolist()
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1] * 8,
                                   "data": deep, "note": "[[[["}]}).encode()
    assert parse_request(body, None).inputs["x"].shape == (1,) * 8


def test_a_header_length_outside_the_body_is_refused():
    with pytest.raises(ProtocolError, match="outside the body"):
        parse_request(b'{"inputs": []}', "999")
