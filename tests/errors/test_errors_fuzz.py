"""Fuzzing: whatever a manifest or a feed dict holds, only modelport's typed errors come out.

Hypothesis rewrites one field of a real bundle's manifest.json with arbitrary JSON (or the
whole file), then opens, verifies and runs the bundle; and it feeds arbitrary dicts to a real
ONNX Runtime session. A bare KeyError/ValueError/TypeError, or a crash, fails the test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import modelport
from modelport.bundle import open_bundle
from modelport.errors import InputError, ModelportError

pytest_plugins = ["tests.support.catalog_fixtures"]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**40) | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=8,
)

PATHS = (
    (), ("schema_version",), ("target",), ("runtime",), ("runtime", "name"), ("artifact",),
    ("artifact", "file"), ("files",), ("files", "model.onnx"), ("inputs",), ("inputs", 0),
    ("inputs", 0, "name"), ("inputs", 0, "dtype"), ("inputs", 0, "shape"),
    ("inputs", 0, "shape", 1), ("inputs", 0, "value_range"), ("outputs",),
    ("outputs", 0, "name"), ("outputs", 0, "dtype"), ("outputs", 0, "shape"), ("model",),
    ("model", "task"), ("accuracy",), ("accuracy", "budget"), ("accuracy", "metrics"),
    ("accuracy", "allowed_drop"), ("samples",), ("preprocessing",),
    ("preprocessing", "tokenizer"), ("preprocessing", "max_length"), ("bench_dims",),
)


@pytest.fixture(scope="module")
def fuzz_bundle(tiny_bundle, tmp_path_factory) -> tuple[Path, dict]:
    path = Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("fuzz") / "b"))
    return path, json.loads((path / "manifest.json").read_text())


def _set(doc, path, value):
    if not path:
        return value
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(PATHS), value=JSON, delete=st.booleans())
def test_manifest_fuzz_raises_only_typed_errors(fuzz_bundle, path, value, delete):
    bundle, original = fuzz_bundle
    doc = json.loads(json.dumps(original))
    try:
        if delete and path:
            node = doc
            for key in path[:-1]:
                node = node[key]
            del node[path[-1]]
        else:
            doc = _set(doc, path, value)
    except (KeyError, IndexError, TypeError):
        assume(False)  # that field is not there in this bundle (e.g. preprocessing is null)
    (bundle / "manifest.json").write_text(json.dumps(doc))
    try:
        opened = open_bundle(bundle)
        opened.inputs, opened.outputs, opened.samples(), opened.tokenizer()
        modelport.verify(bundle)
    except ModelportError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), repr(exc)
    finally:
        (bundle / "manifest.json").write_text(json.dumps(original))


DTYPES = st.sampled_from([np.int64, np.int32, np.float32, np.float64, np.bool_, np.uint8,
                          np.dtype("U3"), np.complex64])
ARRAYS = hnp.arrays(dtype=DTYPES, shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                         max_side=9))
INT_IDS = hnp.arrays(dtype=np.int64, shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1,
                                                            max_side=12),
                     elements=st.integers(-40, 40))
VALUES = ARRAYS | INT_IDS | st.none() | st.integers() | st.lists(st.integers(), max_size=3) | \
    st.text(max_size=3)
KEYS = st.sampled_from(["ids", "IDS", "input_ids", "", 0, None, 1.5])


@pytest.fixture(scope="module")
def session(tiny_bundle):
    with modelport.load(tiny_bundle) as s:
        yield s


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(feeds=st.dictionaries(KEYS, VALUES, max_size=3) | VALUES)
def test_feed_fuzz_raises_only_input_errors(session, feeds):
    try:
        out = session.infer(feeds)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), repr(exc)
        return
    # accepted: then it was a valid feed and the output has the promised shape
    assert out["embedding"].shape == (feeds["ids"].shape[0], 4)
