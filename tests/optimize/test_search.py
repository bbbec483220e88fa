"""The recipe search (--optimize) on a tiny MLP: candidates built, checked, timed and one
chosen; every candidate's figures, the choice and its runtime settings in the manifest and
re-applied at load; the budget drops candidates; --max-time ends the search early and the best
so far still ships; a finished search is cached. No assertion on a time or on which candidate
won (that depends on the CPU): only on what the search guarantees."""

from __future__ import annotations

import argparse
import json

import pytest

import modelport
from modelport.backends.base import BuildOptions
from modelport.metrics import Budget
from modelport.optimize import SearchSettings
from tests.conftest import run_cli
from tests.support.catalog_support import write_feeds, write_mlp_factory

ORT_INT8, OV_INT8, ORT_FP32 = "onnxruntime:cpu:int8", "openvino:cpu:int8", "onnxruntime:cpu:fp32"
#: short timing: the tests check what is recorded, not which candidate is fastest
QUICK = {"duration": 0.02, "rounds": 2}


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    return (str(write_mlp_factory(root / "mlp.py")) + ":make",
            write_feeds(root / "calib", 32, seed=1), write_feeds(root / "eval", 16, seed=2), root)


def _export(mlp, targets, out, *, budget=None, backends=None, **search):
    model, calib, evals, _ = mlp
    settings = SearchSettings(**{**QUICK, "cache": False, **search})
    return modelport.export(model, targets, out=out, calib=calib, eval=evals, bench=None,
                            progress=False, budget=budget, force=True,
                            options=BuildOptions(search=settings, backends=backends or {}))


def _manifest(bundle) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


@pytest.fixture(scope="module")
def searched(mlp, tmp_path_factory):
    """ONNX Runtime INT8 searched for latency (every candidate within the default budget)."""
    pytest.importorskip("onnxruntime")
    return _export(mlp, [ORT_INT8], tmp_path_factory.mktemp("out"))


@pytest.fixture(scope="module")
def ov_first_only(mlp, tmp_path_factory):
    """OpenVINO INT8 searched with a --max-time that lets only the first candidate run (a
    loose budget: NNCF's 8-bit activations on 32 calibration rows of a random MLP vary)."""
    pytest.importorskip("nncf")
    return _export(mlp, [OV_INT8], tmp_path_factory.mktemp("ov"), max_time=1e-3,
                   budget=Budget(min_cosine=0.5, min_top1_agreement=0.5))


def _search(result, target) -> dict:
    return _manifest(result.bundles[target])["build"]["search"]


def test_candidates_built_one_chosen_and_recorded(searched):
    search = _search(searched, ORT_INT8)
    recipes = [c for c in search["candidates"] if c["stage"] == "recipe"]
    assert len(recipes) >= 4 and search["objective"] == "latency" and search["batch"] == 1
    assert [c["name"] for c in recipes if c["chosen"]] == [search["chosen"]]
    assert {"quantize_dynamic defaults", "dynamic INT8"} <= {c["name"] for c in recipes}
    assert any(c.get("peer") for c in recipes)  # the peers' plain recipes are candidates
    for c in search["candidates"]:
        assert {"name", "options", "runtime", "kept", "fidelity"} <= set(c)
        if c["kept"]:  # timed in interleaved rounds
            assert c["p50_ms"] > 0 and c["throughput"] > 0 and c["rounds"] >= 1
        else:
            assert c["why"]
    # stage 2: the winner's runtime settings, the defaults among them, one chosen
    runtime = [c for c in search["candidates"] if c["stage"] == "runtime"]
    assert any(c["runtime"] == {} for c in runtime) and len(runtime) >= 2
    assert sum(c["chosen"] for c in runtime) == 1
    assert search["cpu_kind"] and not search["cut_short"]
    table = searched.table()
    assert f"recipe search for {ORT_INT8}" in table and "quantize_dynamic defaults" in table


@pytest.mark.onnxruntime
def test_budget_drops_candidates(mlp, searched, tmp_path):
    """A budget between the candidates' fidelities (read from the first search: it holds on
    any CPU's kernels) drops those below it and keeps those above."""
    cosines = sorted({c["fidelity"]["cosine_mean"] for c in _search(searched, ORT_INT8)
                      ["candidates"] if c["stage"] == "recipe"})
    assert len(cosines) >= 2, cosines  # static, dynamic, per-tensor, 7-bit: not all equal
    limit = (cosines[0] + cosines[-1]) / 2
    result = _export(mlp, [ORT_INT8], tmp_path, budget=Budget(min_cosine=limit))
    recipes = [c for c in _search(result, ORT_INT8)["candidates"] if c["stage"] == "recipe"]
    dropped = [c for c in recipes if not c["kept"]]
    assert dropped and all("outside the accuracy budget" in c["why"] for c in dropped)
    assert all(c["fidelity"]["cosine_mean"] < limit for c in dropped)
    assert all(c["fidelity"]["cosine_mean"] >= limit for c in recipes if c["kept"])
    assert next(c for c in recipes if c["chosen"])["kept"]


def test_runtime_settings_stored_and_reapplied_at_load(searched):
    manifest = _manifest(searched.bundles[ORT_INT8])
    settings = manifest["build"]["runtime_settings"]
    chosen = next(c for c in manifest["build"]["search"]["candidates"]
                  if c["stage"] == "runtime" and c["chosen"])
    assert settings == manifest["build"]["search"]["runtime_settings"] == chosen["runtime"]
    with modelport.load(searched.bundles[ORT_INT8]) as session:
        options = session._session.get_session_options()
        assert session.threads == settings.get("threads")
        assert session.graph_optimization_level == settings.get("graph_optimization_level",
                                                                "all")
        if "threads" in settings:
            assert options.intra_op_num_threads == settings["threads"]


@pytest.mark.onnxruntime
def test_onnxruntime_bundle_loads_with_its_runtime_settings(searched, tmp_path):
    import shutil

    bundle = shutil.copytree(searched.bundles[ORT_INT8], tmp_path / "b")
    manifest = _manifest(bundle)
    manifest["build"]["runtime_settings"] = {"threads": 1, "graph_optimization_level": "basic"}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with modelport.load(bundle) as session:
        options = session._session.get_session_options()
        assert options.intra_op_num_threads == 1 and session.graph_optimization_level == "basic"
        assert str(options.graph_optimization_level).endswith("ORT_ENABLE_BASIC")
    with modelport.load(bundle, threads=2) as session:  # the caller's threads win
        assert session._session.get_session_options().intra_op_num_threads == 2


@pytest.mark.openvino
def test_openvino_max_time_ships_the_first_and_reapplies_settings(ov_first_only, tmp_path):
    import shutil

    search = _search(ov_first_only, OV_INT8)
    first, *rest = search["candidates"]
    assert search["cut_short"] and first["chosen"] and first["name"] == "modelport default"
    assert any(c.get("peer") == "nncf.quantize" for c in rest)
    assert all("--max-time" in c["why"] for c in rest)
    bundle = shutil.copytree(ov_first_only.bundles[OV_INT8], tmp_path / "b")
    manifest = _manifest(bundle)
    manifest["build"]["runtime_settings"] = {"threads": 1, "streams": 0}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with modelport.load(bundle) as session:
        assert session.threads == 1 and session.streams == 0
        assert int(session._compiled.get_property("INFERENCE_NUM_THREADS")) == 1
        assert "THROUGHPUT" in str(session._compiled.get_property("PERFORMANCE_HINT"))
    from modelport.bench.device import bench_bundles
    from modelport.bench.harness import BenchSettings

    # bench BUNDLE times it as chosen: async requests on the stored streams
    report = bench_bundles([bundle], BenchSettings(iters=4, warmup=1), progress=False)
    assert report["result"]["settings"]["streams"] == 0


@pytest.mark.onnxruntime
def test_max_time_stops_after_the_first_candidate_and_ships_it(mlp, tmp_path):
    result = _export(mlp, [ORT_INT8], tmp_path, max_time=1e-3)
    search = _manifest(result.bundles[ORT_INT8])["build"]["search"]
    first, *rest = search["candidates"]
    assert search["cut_short"] and search["chosen"] == first["name"] == "modelport default"
    assert first["kept"] and rest and all("--max-time" in c["why"] and not c["kept"]
                                          for c in rest)


@pytest.mark.onnxruntime
def test_no_candidate_within_budget_judges_the_default(mlp, tmp_path):
    from modelport.errors import AccuracyBudgetExceeded

    with pytest.raises(AccuracyBudgetExceeded) as info:
        # no float fallback: it would keep the whole MLP float to meet this budget
        _export(mlp, [ORT_INT8], tmp_path, budget=Budget(min_cosine=0.99999999),
                backends={"onnxruntime": {"max_fallback": 0}})
    row = next(r for r in info.value.result.rows if r["target"] == ORT_INT8)
    assert row["search"]["note"].startswith("no candidate within the accuracy budget")
    assert all(not c["kept"] and "accuracy budget" in c["why"]
               for c in row["search"]["candidates"])


@pytest.mark.onnxruntime
def test_a_finished_search_is_cached(mlp, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELPORT_SEARCH_CACHE", str(tmp_path / "cache"))
    first = _export(mlp, [ORT_FP32], tmp_path / "a", cache=True)
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1
    again = _export(mlp, [ORT_FP32], tmp_path / "b", cache=True)
    one, two = (_manifest(r.bundles[ORT_FP32])["build"] for r in (first, again))
    assert not one["search"]["cached"] and two["search"]["cached"]
    assert two["search"]["chosen"] == one["search"]["chosen"]
    assert two["runtime_settings"] == one["runtime_settings"]


def test_parse_duration():
    from modelport.cli.common import parse_duration

    assert [parse_duration(t) for t in ("10m", "90s", "1.5h", "45")] == [600, 90, 5400, 45]
    for bad in ("ten", "-1m", "0", "5x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_duration(bad)


def test_max_time_without_optimize_is_one_line(mlp, tmp_path):
    model = mlp[0]
    proc = run_cli("export", model, "--target", ORT_FP32, "--out", str(tmp_path),
                   "--max-time", "10m")
    assert proc.returncode == 2 and "--max-time bounds a search" in proc.stderr
    assert "Traceback" not in proc.stderr and not any(tmp_path.iterdir())


@pytest.mark.onnxruntime
def test_cli_export_optimize_throughput(mlp, tmp_path):
    model, calib, evals, _ = mlp
    proc = run_cli("export", model, "--target", ORT_FP32, "--calib", str(calib), "--eval",
                   str(evals), "--out", str(tmp_path / "out"), "--no-bench", "--optimize",
                   "throughput", "--max-time", "2m",
                   env={"MODELPORT_SEARCH_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert f"recipe search for {ORT_FP32} (--optimize throughput, batch 32" in proc.stdout
    search = _manifest(tmp_path / "out" / "onnxruntime-cpu-fp32")["build"]["search"]
    assert search["objective"] == "throughput" and search["batch"] == 32
    assert all(c["throughput"] > 0 for c in search["candidates"] if c["kept"])


def test_spare_time_buys_more_timing_rounds_up_to_three_times_and_never_fewer():
    from modelport.optimize.batch_rules import spare_rounds

    asked = SearchSettings(rounds=3, duration=0.5)  # a round of 4 candidates: 3 s
    assert spare_rounds(asked, left=0.0, cands=4) == 3  # late: the asked rounds, never fewer
    assert spare_rounds(asked, left=45.0, cands=4) == 5  # a third of 45 s: 5 rounds of 3 s
    assert spare_rounds(asked, left=600.0, cands=4) == 9  # capped at three times the asked


def test_a_trade_between_batches_wins_only_inside_the_tie_band_and_ahead_overall():
    from modelport.optimize.batch_rules import TIE_BAND, trade_wins

    assert trade_wins([1.02, 0.93], 0.02)  # 2% slower at batch 1 for 7% faster at 32
    assert trade_wins([0.97], 0.02) and not trade_wins([0.99], 0.02)  # one batch: the margin
    assert not trade_wins([1.049, 0.979], 0.02)  # ahead at 32, behind over both together
    assert not trade_wins([1 + TIE_BAND + 0.01, 0.7], 0.02)  # outside the band at batch 1
    assert not trade_wins([1.0, 0.99], 0.02)  # ahead nowhere by the margin


def test_a_speed_tie_goes_to_the_more_faithful_candidate_only_inside_the_band():
    from modelport.optimize.batch_rules import TIE_BAND, fidelity_tie_wins

    closer, base = 0.0040, 0.0060  # 1 - mean cosine: symmetric activations vs the preset
    assert fidelity_tie_wins([1.01, 1.005], 0.02, closer, base)  # a tie, 33% closer
    assert not fidelity_tie_wins([1.01, 1.005], 0.02, 0.0050, base)  # only 17% closer
    assert not fidelity_tie_wins([1.0, 1 + TIE_BAND + 0.01], 0.02, closer, base)  # not a tie
    assert not fidelity_tie_wins([1.015, 1.015], 0.02, closer, base)  # 3% behind overall
    assert not fidelity_tie_wins([1.0, 1.0], 0.02, None, base)  # no fidelity measured


def test_a_setting_that_ties_at_batch_1_is_chosen_by_its_win_at_batch_32():
    """The decision rule alone (figures given, not measured): a runtime setting within the
    margin of the defaults at the search's batch is kept when it wins at the other batch."""
    import time

    from modelport.optimize.batch_rules import other_batch_best
    from modelport.optimize.candidates import Runtime
    from modelport.optimize.search import Candidate, _Run

    run = _Run.__new__(_Run)
    run.settings, run.batch = SearchSettings(objective="latency"), 1
    run.start = time.perf_counter()
    run.deadline, run.cut_short = run.start + 60, False
    at32 = {"defaults": 100.0, "hint bf16": 80.0, "threads 1": 99.0}

    def fake_time(cands, what, *, until, batch=None):
        for c in cands:
            c.record.update(batch=batch, p50_ms=at32[c.name], throughput=None)

    run._time = fake_time
    base, bf16, one = (Candidate(n, "runtime", None, Runtime(), record={"p50_ms": p})
                       for n, p in (("defaults", 10.0), ("hint bf16", 10.1), ("threads 1", 12.0)))
    chosen = other_batch_best(run, [base, bf16, one], base)
    assert chosen is bf16 and "1.25x at batch 32" in bf16.record["why"]
    assert bf16.record["p50_ms"] == 10.1 and bf16.record["other_batch"]["p50_ms"] == 80.0
    assert "other_batch" not in one.record  # 12 ms at batch 1: not a tie, never timed at 32
    at32["hint bf16"] = 99.0  # within the margin at 32 too: the defaults stay
    assert other_batch_best(run, [base, bf16], base) is None
