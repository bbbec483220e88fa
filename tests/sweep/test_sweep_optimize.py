"""`modelport sweep --optimize` on the loopback cluster: the candidates are built on the build
node, timed on a device of the CPU kind, and every device of that kind gets the winner, with
its record and runtime settings in its bundle. No assertion on which candidate wins: only that
one was chosen among the recorded ones by the recorded figures."""

from __future__ import annotations

import json

import pytest

import modelport
from modelport.bundle import open_bundle
from tests.conftest import run_cli
from tests.sweep.conftest import read_events, sweep_argv

INT8, FP32 = "onnxruntime:cpu:int8", "onnxruntime:cpu:fp32"


@pytest.fixture(scope="module")
def optimized(cluster, tmp_path_factory):
    """ORT INT8 (and the FP32 built for its verdict) searched for latency; alpha and beta are
    of one CPU kind: one build, one timing (on alpha, the first of the kind)."""
    root = tmp_path_factory.mktemp("optimize")
    report, events = root / "report", root / "events.jsonl"
    done = cluster.run(sweep_argv(report, "--optimize", "latency", "--max-time", "4s",
                                  "--no-search-cache", targets=INT8, events=events),
                       timeout=300, env={"MODELPORT_SEARCH_CACHE": str(root / "search")})
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((report / "report.json").read_text())["rows"]
    return {(r["machine"], r["target"]): r for r in rows}, done.stdout, report, events, root


@pytest.mark.ray
@pytest.mark.onnxruntime
def test_each_device_gets_the_winner_of_the_recorded_candidates(optimized):
    rows, _, _, events, root = optimized
    for device in ("alpha", "beta"):
        for target in (INT8, FP32):
            search = rows[(device, target)]["search"]
            assert search["objective"] == "latency" and search["timed_on"] == "alpha"
            assert not search["pending"]
            recipes = [c for c in search["candidates"] if c["stage"] == "recipe"]
            timed = [c for c in recipes if c.get("p50_ms") is not None and c.get("bundle")]
            assert timed and [c["name"] for c in recipes if c["chosen"]] == [search["chosen"]]
            assert search["chosen"] == min(timed, key=lambda c: c["p50_ms"])["name"]
            runtime = [c for c in search["candidates"] if c["stage"] == "runtime"]
            chosen = [c for c in runtime if c["chosen"]]
            assert len(chosen) == 1 and chosen[0]["runtime"] == search["runtime_settings"]
            defaults = next(c for c in runtime if c["runtime"] == {})
            # each setting was checked on the device, on the bundle's samples
            assert all(c["fidelity_on"] == "bundle samples" for c in runtime if c["kept"])
            if chosen[0] is not defaults:  # a setting ships only when it beat the defaults
                assert chosen[0]["p50_ms"] < defaults["p50_ms"] * (1 - search["margin"])
    assert len(rows[("alpha", INT8)]["search"]["candidates"]) >= 3  # the peers' among them
    # the INT8 verdict still compares the (searched) INT8 with the (searched) FP32 per device
    for device in ("alpha", "beta"):
        assert rows[(device, INT8)]["speed_verdict"]["vs"] == FP32
    nodes = {e["device"]: e["node"] for e in read_events(events) if e["event"] == "probe"}
    searches = [e for e in read_events(events) if e["event"] == "search"]
    assert len(searches) == 1 and searches[0]["node"] == nodes["alpha"]
    search = rows[("alpha", INT8)]["search"]
    entry = root / "search" / f"{search['key']}.json"
    if search.get("cut_short"):  # --max-time ran out (a loaded machine): never cached
        assert not entry.exists()
    else:  # the search cache holds the choice
        assert json.loads(entry.read_text())["chosen"] == search["chosen"]


@pytest.mark.ray
@pytest.mark.onnxruntime
def test_the_bundle_records_its_winner_and_load_reapplies_its_settings(optimized):
    rows = optimized[0]
    for device in ("alpha", "beta"):
        row = rows[(device, INT8)]
        build = open_bundle(row["bundle"]).manifest["build"]
        assert build["search"]["chosen"] == row["search"]["chosen"]
        assert "search_candidate" not in build
        settings = build["runtime_settings"]
        assert settings == row["search"]["runtime_settings"]
        with modelport.load(row["bundle"]) as session:
            assert session.threads == settings.get("threads")
            assert session.graph_optimization_level == settings.get("graph_optimization_level",
                                                                    "all")


@pytest.mark.ray
@pytest.mark.onnxruntime
def test_the_sweep_table_lists_each_devices_choice(optimized):
    rows, stdout, report, _, _ = optimized
    assert "recipe search (--optimize latency), the winner per device" in stdout
    for device in ("alpha", "beta"):
        line = next(ln for ln in stdout.splitlines() if ln.startswith(device) and INT8 in ln
                    and rows[(device, INT8)]["search"]["chosen"] in ln)
        assert "alpha" in line.split(INT8, 1)[1]  # timed on alpha
    assert f"recipe search for {INT8} on alpha" in stdout  # every candidate's figures
    assert "## Recipe search (--optimize)" in (report / "report.md").read_text()


def test_a_bad_optimize_value_is_a_named_error(tmp_path):
    done = run_cli("sweep", "builtin:digits-cnn", "--targets", INT8, "--report",
                   str(tmp_path / "r"), "--optimize", "fastest", timeout=60)
    assert done.returncode == 2
    assert "--optimize" in done.stderr and "latency" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r").exists()
    from modelport.errors import UsageError
    from modelport.sweep.run import make_spec

    with pytest.raises(UsageError, match="--optimize takes latency or throughput"):
        make_spec(["builtin:digits-cnn"], [INT8], (), None, None, {}, search={"objective": "x"})
