"""A static fast path with its own precision hint (``Runtime.fast_path_precision``): the
setting's form, the OpenVINO session compiling each fast path with its hint, and the search
trying each fast path with the other hint stage 2 proposes, on given figures with real NNCF
builds of a tiny MLP (bf16 proposed through injected CPU features; where the CPU has no bf16
the plugin runs the compile in f32, which the assertions allow). No assertion on a measured
time."""

from __future__ import annotations

import json

import numpy as np
import pytest

import modelport
from modelport.backends.static_shapes import specialized_shapes
from modelport.optimize.candidates import Runtime
from tests.optimize.conftest import export_searched

ONE, BATCH = {"features": [1, 12]}, {"features": [32, 12]}
#: an AVX-512 CPU with bf16 arithmetic: the search proposes the bf16 hint
BF16_CPU = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16")


def test_the_setting_keeps_one_hint_per_fast_path_and_drops_all_none():
    rt = Runtime().with_fast_path(ONE).with_fast_path(BATCH, "bf16")
    assert rt.to_dict() == {"specialize": [ONE, BATCH], "fast_path_precision": [None, "bf16"]}
    assert rt.describe() == "static fast path 1x12, 32x12 bf16"
    assert Runtime(**rt.to_dict()) == rt  # as stored in a bundle and read back
    plain = Runtime().with_fast_path(ONE).with_fast_path(BATCH)
    assert plain.fast_path_precision is None and "fast_path_precision" not in plain.to_dict()
    with pytest.raises(ValueError, match="one hint per fast path"):
        Runtime(specialize=[ONE, BATCH], fast_path_precision=["bf16"])


def _fake_time(self, cands, what, *, until, batch=None):
    """Given figures: a fast path 0.5x at batch 1 whatever its hint; at batch 32 0.9x with the
    bf16 hint and 0.995x (a tie: it loses) without it; the bf16 hint for the whole session
    1.005x at both batches (it loses)."""
    at = batch or self.batch
    for c in cands:
        shapes = specialized_shapes(c.runtime.to_dict().get("specialize"))
        hints = list(c.runtime.fast_path_precision or [None] * len(shapes))
        factor = 1.005 if c.runtime.inference_precision else 1.0
        for shape, hint in zip(shapes, hints):
            if shape["features"][0] == at:
                factor *= 0.5 if at == 1 else 0.9 if hint == "bf16" else 0.995
        p50 = 10.0 * at * factor
        c.record.update(batch=at, p50_ms=p50, throughput=1000.0 * at / p50, rounds=1)


def test_a_fast_path_is_kept_with_the_hint_it_wins_with_and_loads_with_it(ov_int8_mlp,
                                                                          tmp_path,
                                                                          monkeypatch):
    from modelport.backends.openvino.backend import _type_name, effective_precision
    from modelport.optimize.search import _Run

    monkeypatch.setattr(_Run, "_time", _fake_time)
    bundle = export_searched(ov_int8_mlp, tmp_path, cpu_features=BF16_CPU)
    manifest = json.loads((bundle / "manifest.json").read_text())
    rows = [c for c in manifest["build"]["search"]["candidates"] if c["stage"] == "shape"]
    # per batch: the loads before it, the fast path with the session's hint, with bf16
    assert [c["batch"] for c in rows] == [1, 1, 1, 32, 32, 32]
    assert [c["runtime"].get("fast_path_precision") for c in rows] == [
        None, None, ["bf16"], None, None, [None, "bf16"]]  # stored only when not all None
    assert [c["chosen"] for c in rows] == [False, True, False, False, False, True]
    assert rows[4]["why"] == "another load of this stage was faster"
    settings = manifest["build"]["runtime_settings"]
    assert settings == {"specialize": [ONE, BATCH], "fast_path_precision": [None, "bf16"]}
    with modelport.load(bundle) as session:
        compiled = {k[0][1][0]: v[0] for k, v in session._fast._paths.items()}  # batch ->
        hint = session._compiled.get_property("INFERENCE_PRECISION_HINT")
        assert str(compiled[1].get_property("INFERENCE_PRECISION_HINT")) == str(hint)
        bf16 = effective_precision(bundle / "model.xml", "CPU", "bf16")  # f32 without bf16
        assert _type_name(compiled[32].get_property("INFERENCE_PRECISION_HINT")) == bf16
        feed = {"features": np.random.default_rng(3).standard_normal((32, 12)).astype(
            np.float32)}
        assert session._fast.takes(feed)
        assert all(np.isfinite(v).all() for v in session.infer(feed).values())


def test_a_fast_path_that_differs_from_the_dynamic_model_ships_when_it_keeps_the_budget(
        ov_int8_mlp, tmp_path, monkeypatch):
    """Every fast path made to differ (the equality bound above 1): each is then judged by
    the evaluation split through a static load of its shape and hint, which keeps the loose
    budget, so the choice is the same as when they matched."""
    from modelport.optimize import static_stage
    from modelport.optimize.search import _Run

    monkeypatch.setattr(_Run, "_time", _fake_time)
    monkeypatch.setattr(static_stage, "FAST_PATH_MIN_COSINE", 1.5)
    calls = []
    real = static_stage.check_fast_path
    monkeypatch.setattr(static_stage, "check_fast_path",
                        lambda *a: calls.append(a[3]) or real(*a))
    bundle = export_searched(ov_int8_mlp, tmp_path, cpu_features=BF16_CPU)
    manifest = json.loads((bundle / "manifest.json").read_text())
    rows = [c for c in manifest["build"]["search"]["candidates"] if c["stage"] == "shape"]
    assert ONE in calls and BATCH in calls
    assert all(c["kept"] for c in rows), [c.get("why") for c in rows]
    assert manifest["build"]["runtime_settings"] == {
        "specialize": [ONE, BATCH], "fast_path_precision": [None, "bf16"]}
