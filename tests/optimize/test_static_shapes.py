"""--shape on ONNX Runtime and OpenVINO: the bundle declares and loads static input dims, its
outputs equal the dynamic build's, an input of another shape is a one-line error naming the
bundle's shape; with --optimize the static specialization is a recorded candidate and the
choice's settings are re-applied at load. A tiny MLP fixed at batch 4 (the evaluation split
has 15 rows: the last batch is short). No assertion on a time or on which load won."""

from __future__ import annotations

import json

import numpy as np
import pytest

import modelport
from modelport.backends.base import BuildOptions
from modelport.backends.static_shapes import specialized_shapes
from modelport.errors import InputError, UsageError
from modelport.optimize import SearchSettings
from modelport.optimize.static_stage import REJUDGED
from modelport.shapes import fix_shapes
from modelport.specs import TensorSpec
from tests.conftest import run_cli
from tests.support.catalog_support import write_feeds, write_mlp_factory

pytestmark = [pytest.mark.onnxruntime, pytest.mark.openvino]

ORT, OV, ORT_INT8 = "onnxruntime:cpu:fp32", "openvino:cpu:fp32", "onnxruntime:cpu:int8"
SHAPE = {"features": (4, 12)}
FIXED = {"onnxruntime": {"shapes": SHAPE}, "openvino": {"shapes": SHAPE}}


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    pytest.importorskip("openvino")
    root = tmp_path_factory.mktemp("static")
    return (str(write_mlp_factory(root / "mlp.py")) + ":make",
            write_feeds(root / "calib", 32, seed=1), write_feeds(root / "eval", 15, seed=2), root)


def _export(mlp, targets, out, backends=None, search=None):
    model, calib, evals, _ = mlp
    return modelport.export(model, targets, out=out, calib=calib, eval=evals, bench=None,
                            progress=False, force=True,
                            options=BuildOptions(backends=backends or {}, search=search))


@pytest.fixture(scope="module")
def built(mlp, tmp_path_factory):
    """(dynamic, static) FP32 bundles of both backends."""
    dynamic = _export(mlp, [ORT, OV], tmp_path_factory.mktemp("dynamic"))
    static = _export(mlp, [ORT, OV], tmp_path_factory.mktemp("fixed"), FIXED)
    return dynamic, static


def _manifest(bundle) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _runtime_dims(session) -> list[int]:
    if hasattr(session, "_compiled"):  # OpenVINO: the compiled model's input
        return [int(d) for d in session._compiled.input(0).get_partial_shape().to_shape()]
    return session._session.get_inputs()[0].shape  # ONNX Runtime, after the overrides


@pytest.mark.parametrize("target", [ORT, OV])
def test_static_bundle_loads_static_and_matches_the_dynamic_build(built, target):
    dynamic, static = (r.bundles[target] for r in built)
    manifest = _manifest(static)
    assert manifest["inputs"][0]["shape"] == [4, 12] and manifest["outputs"][0]["shape"] == [4, 3]
    assert manifest["build"]["static_shapes"] == {"features": [4, 12]}
    assert manifest["build"]["runtime_settings"]["shapes"] == {"features": [4, 12]}
    assert _manifest(dynamic)["inputs"][0]["shape"] == ["batch", 12]  # no --shape: unchanged
    feed = {"features": np.random.default_rng(3).standard_normal((4, 12)).astype(np.float32)}
    with modelport.load(static) as s, modelport.load(dynamic) as d:
        assert s.inputs["features"].shape == (4, 12) and _runtime_dims(s) == [4, 12]
        got, want = s.infer(feed), d.infer(feed)
        assert got.keys() == want.keys()
        for k in got:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)
        with pytest.raises(InputError, match=r"dimension 0 must be 4 \(static shape \[4, 12\]\)"):
            s.infer({"features": feed["features"][:2]})


def test_wrong_shape_in_run_is_one_line_naming_the_shape(built, tmp_path):
    np.savez(tmp_path / "x.npz", features=np.zeros((2, 12), np.float32))
    proc = run_cli("run", str(built[1].bundles[ORT]), "--input", str(tmp_path / "x.npz"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: input 'features' dimension 0 must be 4 (static shape [4, 12]), got 2"]


def test_optimize_records_the_static_candidate_and_reapplies_the_choice(mlp, tmp_path):
    search = SearchSettings(duration=0.02, rounds=2, cache=False)
    result = _export(mlp, [ORT_INT8], tmp_path, FIXED, search)
    manifest = _manifest(result.bundles[ORT_INT8])
    record = manifest["build"]["search"]
    assert record["shapes"] == {"features": [4, 12]} and record["batch"] == 4
    shape_rows = [c for c in record["candidates"] if c["stage"] == "shape"]
    assert len(shape_rows) == 2 and sum(c["chosen"] for c in shape_rows) == 1
    dynamic, static = shape_rows
    assert dynamic["runtime"] == {} and static["runtime"] == {"shapes": {"features": [4, 12]}}
    assert static["kept"] and static["fidelity"]["cosine_mean"] > 0.99
    assert all(c["batch"] == 4 for c in record["candidates"] if c.get("kept"))
    chose_static = static["chosen"]
    settings = manifest["build"]["runtime_settings"]
    assert ("shapes" in settings) == chose_static == (manifest["inputs"][0]["shape"] == [4, 12])
    # stage 2 tries its settings on top of the shape stage's choice
    runtime = [c for c in record["candidates"] if c["stage"] == "runtime"]
    assert runtime and all(("shapes" in c["runtime"]) == chose_static for c in runtime)
    with modelport.load(result.bundles[ORT_INT8]) as session:
        assert session.static_shapes == settings.get("shapes")
        assert session.graph_optimization_level == settings.get("graph_optimization_level",
                                                                "all")


def test_fix_shapes_follows_axis_names_and_names_what_is_missing():
    specs = [TensorSpec("input_ids", "int64", ("batch", "seq")),
             TensorSpec("attention_mask", "int64", ("batch", "seq")),
             TensorSpec("pixel_values", "float32", ("batch", 3, "side", "side"))]
    fixed = fix_shapes(specs, {"input_ids": (2, 64), "pixel_values": (2, 3, 32, 32)}, {},
                       needs="it needs")
    assert [s.shape for s in fixed] == [(2, 64), (2, 64), (2, 3, 32, 32)]
    with pytest.raises(UsageError, match=r"input 'pixel_values' has dynamic axes \['side'\] "
                                         r"and it needs: pass --shape pixel_values=Nx3xNxN"):
        fix_shapes(specs, {"input_ids": (2, 64)}, {}, needs="it needs")
    with pytest.raises(UsageError, match="does not fit"):
        fix_shapes(specs, {"input_ids": (2, 64), "pixel_values": (2, 4, 32, 32)}, {}, needs="")


def test_fast_path_setting_keeps_one_shape_as_a_mapping_and_several_as_a_list():
    """Bundles made before several fast paths stored one mapping; they load the same."""
    from modelport.backends.static_shapes import specialized_shapes
    from modelport.optimize.candidates import Runtime

    one, two = {"input_ids": [1, 128]}, {"input_ids": [32, 128]}
    assert Runtime(specialize=one).to_dict() == {"specialize": one}
    assert Runtime(specialize=[one, two]).to_dict() == {"specialize": [one, two]}
    assert Runtime(specialize=Runtime(specialize=[one, two]).specialize) == \
        Runtime(specialize=[one, two])
    assert Runtime(specialize=[one, two]).describe() == "static fast path 1x128, 32x128"
    assert specialized_shapes(one) == [one] and specialized_shapes([one, two]) == [one, two]
    assert specialized_shapes(None) == []


def test_a_cached_search_rebuilds_the_same_static_choice(mlp, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPORT_SEARCH_CACHE", str(tmp_path / "cache"))
    search = SearchSettings(duration=0.02, rounds=2, cache=True)
    first, again = (_manifest(_export(mlp, [ORT], tmp_path / d, FIXED, search).bundles[ORT])
                    for d in ("a", "b"))
    assert not first["build"]["search"]["cached"] and again["build"]["search"]["cached"]
    assert again["build"]["runtime_settings"] == first["build"]["runtime_settings"]
    assert again["inputs"] == first["inputs"]  # static again exactly when it was chosen static


def test_optimize_without_shape_tries_an_openvino_static_fast_path(mlp, tmp_path):
    """No --shape: OpenVINO's search tries the winner with a static fast path for the timed
    shape beside the dynamic model; the bundle still takes any shape, the fast path's outputs
    equal the dynamic model's, and a chosen fast path is re-applied at load."""
    search = SearchSettings(duration=0.02, rounds=2, cache=False)
    result = _export(mlp, [OV], tmp_path, None, search)
    bundle = result.bundles[OV]
    manifest = _manifest(bundle)
    record = manifest["build"]["search"]
    assert manifest["inputs"][0]["shape"] == ["batch", 12]  # never made static
    shape_rows = [c for c in record["candidates"] if c["stage"] == "shape"
                  and REJUDGED not in c["name"]]
    # one pair per batch: batch 1 (the latency search's), then 32 (the bench's other batch),
    # each the loads before it against the same plus one fast path, one of the two chosen
    assert len(shape_rows) == 4 and [c["batch"] for c in shape_rows] == [1, 1, 32, 32]
    assert [sum(c["chosen"] for c in pair) for pair in (shape_rows[:2], shape_rows[2:])] == [1, 1]
    fast1, fast32 = shape_rows[1], shape_rows[3]
    assert fast1["runtime"] == {"specialize": {"features": [1, 12]}} and fast1["kept"]
    shapes32 = fast32["runtime"]["specialize"]  # added to the batch-1 one when that was kept
    assert shapes32 == ([{"features": [1, 12]}, {"features": [32, 12]}] if fast1["chosen"]
                        else {"features": [32, 12]}) and fast32["kept"]
    # a fast path that lost may be judged again after stage 2 (when it chose a setting)
    again = [c for c in record["candidates"] if REJUDGED in c["name"]]
    chosen = [{"features": [1, 12]}] * fast1["chosen"] + [{"features": [32, 12]}] * \
        fast32["chosen"] + [specialized_shapes(c["runtime"]["specialize"])[-1]
                            for c in again[1::2] if c["chosen"]]
    stored = manifest["build"]["runtime_settings"].get("specialize")
    def by_batch(shapes):
        return sorted(shapes, key=lambda s: s["features"][0])

    assert by_batch(specialized_shapes(stored)) == by_batch(chosen)
    with modelport.load(bundle) as session:
        assert session.specialized == (specialized_shapes(stored) or None)
    # the session itself, either way: the fast path takes [1, 12] only, outputs unchanged
    from modelport.backends.openvino.backend import OpenVINOSession

    art = modelport.load(bundle)
    inputs, outputs = list(art.inputs.values()), list(art.outputs.values())
    art.close()
    xml = bundle / "model.xml"
    rng = np.random.default_rng(5)
    with OpenVINOSession(xml, inputs, outputs, specialize={"features": [1, 12]}) as s, \
            OpenVINOSession(xml, inputs, outputs) as d:
        for rows in (1, 3):
            feed = {"features": rng.standard_normal((rows, 12)).astype(np.float32)}
            assert s._fast.takes(feed) == (rows == 1)
            got, want = s.infer(feed), d.infer(feed)
            for k in want:
                np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)
    # several fast paths: each takes its own shape
    both = [{"features": [1, 12]}, {"features": [4, 12]}]
    with OpenVINOSession(xml, inputs, outputs, specialize=both) as s, \
            OpenVINOSession(xml, inputs, outputs) as d:
        for rows in (1, 3, 4):
            feed = {"features": rng.standard_normal((rows, 12)).astype(np.float32)}
            assert s._fast.takes(feed) == (rows in (1, 4))
            got, want = s.infer(feed), d.infer(feed)
            for k in want:
                np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)


def _given_figures(wins_with_the_setting: bool):
    """``_Run._time`` on given figures (p50 ms at the timed batch), not measured: a thread
    setting 0.8x; the [1, 12] fast path 0.5x at batch 1; the [32, 12] one 0.99x at batch 32
    (within the margin: it loses), or with the thread setting 0.9x when
    ``wins_with_the_setting``."""

    def fake_time(self, cands, what, *, until, batch=None):
        at = batch or self.batch
        for c in cands:
            setting = c.runtime.threads is not None
            paths = [s["features"][0]
                     for s in specialized_shapes(c.runtime.to_dict().get("specialize"))]
            factor = 0.8 if setting else 1.0
            if at in paths:
                factor *= 0.5 if at == 1 else 0.9 if setting and wins_with_the_setting else 0.99
            p50 = 10.0 * at * factor
            c.record.update(batch=at, p50_ms=p50, throughput=1000.0 * at / p50, rounds=1)

    return fake_time


@pytest.mark.parametrize("wins", [True, False], ids=["wins-after", "loses-again"])
def test_a_fast_path_that_lost_is_judged_again_with_the_chosen_setting(mlp, tmp_path,
                                                                       monkeypatch, wins):
    """The decision rule on given figures, with real builds and loads: the [32, 12] fast path
    loses with the runtime defaults, stage 2 then chooses a thread setting, and the fast path
    is judged again with it (rows of stage ``shape`` named REJUDGED); kept, it is in the
    bundle's runtime settings beside the [1, 12] one and the bundle loads with both."""
    import os

    from modelport.optimize.search import _Run

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: no thread setting to choose")
    monkeypatch.setattr(_Run, "_time", _given_figures(wins))
    search = SearchSettings(duration=0.02, rounds=2, cache=False)
    manifest = _manifest(bundle := _export(mlp, [OV], tmp_path, None, search).bundles[OV])
    rows = manifest["build"]["search"]["candidates"]
    one, both = {"features": [1, 12]}, [{"features": [1, 12]}, {"features": [32, 12]}]
    first = [c for c in rows if c["stage"] == "shape" and REJUDGED not in c["name"]]
    assert [c["chosen"] for c in first] == [False, True, True, False]  # [32, 12] lost
    assert first[3]["kept"] and first[3]["runtime"] == {"specialize": both}
    setting = next(c for c in rows if c["stage"] == "runtime" and c["chosen"])["runtime"]
    assert setting["threads"] >= 1 and setting["specialize"] == one
    again = [c for c in rows if REJUDGED in c["name"]]
    assert [c["stage"] for c in again] == ["shape", "shape"] and rows[-2:] == again
    assert [c["batch"] for c in again] == [32, 32]
    assert again[0]["runtime"] == setting
    assert again[1]["runtime"] == {**setting, "specialize": both} and again[1]["kept"]
    assert [c["chosen"] for c in again] == [not wins, wins]
    stored = manifest["build"]["runtime_settings"]
    assert stored == (again[1] if wins else again[0])["runtime"]
    assert manifest["build"]["search"]["runtime_settings"] == stored
    with modelport.load(bundle) as session:
        assert session.specialized == (both if wins else [one])
        feed = {"features": np.random.default_rng(7).standard_normal((32, 12)).astype(
            np.float32)}
        assert session._fast.takes(feed) == wins  # batch 32 runs its static compile


def test_a_setting_a_hair_slower_at_batch_1_is_chosen_by_its_win_at_batch_32(mlp, tmp_path,
                                                                            monkeypatch):
    """Figures given, real builds and loads: the runtime defaults are the fastest at batch 1
    and a thread setting is within the margin behind them; at batch 32 the setting is 0.8x, so
    the tie is broken there and the setting ships (the defaults' being first at batch 1 must
    not skip the tie-break)."""
    import os

    from modelport.optimize.search import _Run

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: no thread setting to choose")

    def fake_time(self, cands, what, *, until, batch=None):
        at = batch or self.batch
        for c in cands:
            factor = (1.005 if at == 1 else 0.8) if c.runtime.threads is not None else 1.0
            p50 = 10.0 * at * factor
            c.record.update(batch=at, p50_ms=p50, throughput=1000.0 * at / p50, rounds=1)

    monkeypatch.setattr(_Run, "_time", fake_time)
    search = SearchSettings(duration=0.02, rounds=2, cache=False)
    manifest = _manifest(_export(mlp, [OV], tmp_path, None, search).bundles[OV])
    rows = [c for c in manifest["build"]["search"]["candidates"] if c["stage"] == "runtime"]
    chosen = next(c for c in rows if c["chosen"])
    assert chosen["runtime"].get("threads") and "at batch 32" in chosen["why"]
    assert chosen["other_batch"]["batch"] == 32 and chosen["other_batch"]["p50_ms"] == 256.0
    assert manifest["build"]["runtime_settings"]["threads"] == chosen["runtime"]["threads"]


def test_recipes_that_tie_at_batch_1_are_decided_at_batch_32(mlp, tmp_path, monkeypatch):
    """Figures given, real builds: every recipe within budget ties with modelport's (within the
    margin) at batch 1; one of them is 0.8x at batch 32, so it ships, its figures there
    recorded (``other_batch``) and the reason said."""
    from modelport.optimize.search import _Run

    fast: list[str] = []

    def fake_time(self, cands, what, *, until, batch=None):
        at = batch or self.batch
        for c in cands:
            if not fast and c.recipe.name != "modelport default":
                fast.append(c.recipe.name)  # the first other recipe timed
            slow = 1.0 if c.recipe.name == "modelport default" else 1.005
            p50 = 10.0 * at * (0.8 if at == 32 and c.recipe.name in fast else slow)
            c.record.update(batch=at, p50_ms=p50, throughput=1000.0 * at / p50, rounds=1)

    monkeypatch.setattr(_Run, "_time", fake_time)
    search = SearchSettings(duration=0.02, rounds=2, cache=False)
    manifest = _manifest(_export(mlp, [ORT_INT8], tmp_path, None, search).bundles[ORT_INT8])
    rows = [c for c in manifest["build"]["search"]["candidates"] if c["stage"] == "recipe"]
    assert fast, "no second recipe within budget on the MLP"
    chosen = next(c for c in rows if c["name"] == fast[0])
    assert chosen["chosen"] and "ties with 'modelport default' at batch 1" in chosen["why"]
    assert chosen["other_batch"]["batch"] == 32 and chosen["other_batch"]["p50_ms"] == 256.0
    assert manifest["build"]["search"]["chosen"] == fast[0]
