"""Session.infer checks a feed's names/dtypes/shapes once per signature: a benchmark loop must
not pay check_feeds (and its message building) on every call. Real ONNX Runtime session."""

from __future__ import annotations

import numpy as np
import pytest

from modelport.backends import base
from modelport.errors import InputError


@pytest.fixture()
def ort_session(digits):
    from modelport.backends.onnxruntime.backend import OnnxRuntimeSession

    art = digits.onnx_artifact
    with OnnxRuntimeSession(art.path, art.inputs, art.outputs, threads=1) as session:
        yield session


def test_second_call_with_same_shapes_skips_check_feeds(ort_session, digits, monkeypatch):
    calls = []
    real = base.check_feeds
    monkeypatch.setattr(base, "check_feeds", lambda *a: (calls.append(1), real(*a))[1])
    feed = digits.fresh_inputs(2)
    ort_session.infer(feed)
    ort_session.infer(feed)
    ort_session.infer({k: v.copy() for k, v in feed.items()})
    assert len(calls) == 1
    ort_session.infer(digits.fresh_inputs(3))  # a new batch size: checked once more
    assert len(calls) == 2


def test_a_bad_feed_is_still_checked_after_good_ones(ort_session, digits):
    feed = digits.fresh_inputs(1)
    ort_session.infer(feed)
    bad = {k: v.astype(np.float64) for k, v in feed.items()}
    with pytest.raises(InputError, match="must be float32"):
        ort_session.infer(bad)
