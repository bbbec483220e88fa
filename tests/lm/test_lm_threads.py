"""ORT LM bundles size their intra-op pool by the runtime setting ``thread_rule: half`` (one
thread per two logical cores, onnxruntime-genai's rule); ``threads=`` at load still wins."""

from __future__ import annotations

import json
import os

import pytest

import modelport
from modelport.backends.runtime_settings import threads_of_rule

pytestmark = [pytest.mark.onnxruntime]


def test_half_rule_is_one_thread_per_two_logical_cores():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert threads_of_rule("half") == max(1, cores // 2)
    assert threads_of_rule(None) is None and threads_of_rule("all") is None


def test_lm_bundle_loads_with_the_rule_and_an_explicit_count_wins(qwen2_export):
    _, result, error = qwen2_export
    assert error is None
    bundle = result.bundles["onnxruntime:cpu:fp32"]
    settings = json.loads((bundle / "manifest.json").read_text())["build"]["runtime_settings"]
    assert settings["thread_rule"] == "half" and settings["spinning"] is False
    with modelport.load(bundle) as session:
        assert session.inner.threads == threads_of_rule("half")
    with modelport.load(bundle, threads=2) as session:
        assert session.inner.threads == 2
