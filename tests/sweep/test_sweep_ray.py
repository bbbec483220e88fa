"""`modelport sweep --ray` on a real two-node cluster: rows, placement, faults, resume; then
the same command without --ray (no Ray imported) on that sweep's cache, and device-side code
without torch; and `sweep --optimize` on the same cluster. Those sit here, beside the cluster
sweep: in files of their own they started a second cluster (and the local ones ran the sweep
again) on another pytest-xdist worker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

import modelport
from modelport.bundle import open_bundle
from tests.conftest import ROOT
from tests.sweep.conftest import QUICK, TARGETS, read_events, sweep_argv, wait_for_event

pytestmark = [pytest.mark.ray, pytest.mark.onnxruntime, pytest.mark.openvino]


def test_rows_per_device_each_on_its_own_node(digits_sweep):
    report_dir, events = digits_sweep
    report = json.loads((report_dir / "report.json").read_text())
    runs = {run["machine"]: run for run in report["runs"]}
    assert set(runs) == {"alpha", "beta"}
    nodes = {name: run["ray_node_id"] for name, run in runs.items()}
    assert all(isinstance(n, str) for n in nodes.values()) and nodes["alpha"] != nodes["beta"]
    for device in ("alpha", "beta"):
        rows = {r["target"]: r for r in report["rows"] if r["machine"] == device}
        assert set(rows) == {"torch:cpu:fp32", "onnxruntime:cpu:fp32", "onnxruntime:cpu:int8",
                             "openvino:cpu:fp32"}
        for target, row in rows.items():
            assert row["status"] in ("ok", "reference", "slower than fp32"), (device, target,
                                                                              row["reason"])
            assert row["fidelity_on"] == "bundle samples"  # checked on the device itself
            assert row["fidelity"]["top1_agreement"] > 0.95
            assert row["speedup_latency"] is not None
        assert rows["torch:cpu:fp32"]["reference"] is True
        # INT8 judged against ORT FP32 timed on the same device, built for that comparison
        assert rows["onnxruntime:cpu:fp32"]["added_for_comparison"] is True
        verdict = rows["onnxruntime:cpu:int8"]["speed_verdict"]
        assert verdict["vs"] == "onnxruntime:cpu:fp32"
        assert rows["onnxruntime:cpu:int8"]["status"] == ("slower than fp32" if verdict["slower"]
                                                          else "ok")
        assert runs[device]["reference"] == "torch:cpu:fp32"
    # every bench ran on its device's node, as the progress events say too
    benches = [e for e in read_events(events) if e["event"] == "bench"]
    assert len(benches) == 8
    assert all(e["node"] == nodes[e["device"]] for e in benches)
    builds = [e for e in read_events(events) if e["event"] == "build"]
    assert [b["status"] for b in builds] == ["ok"]  # one CPU kind: one build for both devices
    text = (report_dir / "report.md").read_text()
    assert "alpha" in text and "beta" in text


def test_report_follows_the_schema(digits_sweep):
    jsonschema = pytest.importorskip("jsonschema")
    from modelport.bench.report_doc import schema

    report = json.loads((digits_sweep[0] / "report.json").read_text())
    jsonschema.validate(report, schema())


# -- sweep --optimize: the candidates are built on the build node, timed on a device of the
# CPU kind, and every device of that kind gets the winner, with its record and runtime
# settings in its bundle. No assertion on which candidate wins: only that one was chosen
# among the recorded ones by the recorded figures.
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


def test_resume_skips_unchanged_builds(cluster, digits_sweep, tmp_path):
    report_dir, _ = digits_sweep
    events = tmp_path / "events.jsonl"
    done = cluster.run(sweep_argv(report_dir, devices="alpha", events=events), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    builds = [e for e in read_events(events) if e["event"] == "build"]
    assert [b["status"] for b in builds] == ["cached"]  # same inputs, same CPU kind
    assert len([e for e in read_events(events) if e["event"] == "bench"]) == 4
    rows = json.loads((report_dir / "report.json").read_text())["rows"]
    assert {r["machine"] for r in rows} == {"alpha"}


def test_unknown_device_is_refused_at_once(cluster, tmp_path):
    start = time.monotonic()
    done = cluster.run(sweep_argv(tmp_path / "r", devices="alpha,nosuch"), timeout=60)
    assert time.monotonic() - start < 10  # the bound: never a hang
    assert done.returncode == 2
    line = done.stderr.strip().splitlines()[-1]
    assert "nosuch" in line and "alpha, beta, gamma" in line
    assert not (tmp_path / "r").exists()  # nothing built, nothing written


def test_ctrl_c_cancels_and_leaves_no_report(cluster, tmp_path):
    events = tmp_path / "events.jsonl"
    proc = cluster.popen(sweep_argv(tmp_path / "r", targets="onnxruntime:cpu:fp32",
                                    events=events),
                         stdout=-1, stderr=-1, text=True)
    try:
        wait_for_event(events, proc, lambda e: e["event"] == "probe")
        proc.send_signal(signal.SIGINT)  # the build is running now
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert not (tmp_path / "r" / "report.json").exists()
    assert not any(e["event"] == "report" for e in read_events(events))


def test_lost_node_rows_say_so_and_the_rest_completes(cluster, digits_sweep, tmp_path):
    events = tmp_path / "events.jsonl"
    # the builds come from the first sweep's cache: the bench phase is what is under test
    proc = cluster.popen(sweep_argv(tmp_path / "r", "--cache", str(digits_sweep[0] / "builds"),
                                    devices="alpha,gamma", events=events),
                         stdout=-1, stderr=-1, text=True)
    try:
        wait_for_event(events, proc, lambda e: e["event"] == "build")
        cluster.kill_node("gamma")  # the moment the first build is done
        out, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    rows = {(r["machine"], r["target"]): r for r in report["rows"]}
    for target in ("torch:cpu:fp32", *TARGETS.split(",")):
        assert rows[("alpha", target)]["status"] in ("ok", "reference", "slower than fp32")
        lost = rows[("gamma", target)]
        assert (lost["status"], lost["reason"]) == ("failed", "node lost")
    assert "failed: node lost" in out


# -- without --ray --------------------------------------------------------------------------
def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False, cwd=ROOT, env={**os.environ, **env})


def test_devices_without_ray_is_refused(tmp_path):
    done = _python("import sys; from modelport.cli import main; "
                   f"sys.exit(main(['sweep', 'builtin:digits-cnn', '--targets', '{TARGETS}', "
                   f"'--devices', 'alpha', '--report', '{tmp_path / 'r'}']))")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: --devices needs --ray")


def test_local_sweep_imports_no_ray_and_reuses_the_cache(digits_sweep, tmp_path):
    cache = digits_sweep[0] / "builds"
    report = tmp_path / "local"
    argv = ["sweep", "builtin:digits-cnn", "--targets", TARGETS, "--report", str(report),
            "--cache", str(cache), "--label", "here", "--events", str(tmp_path / "ev"),
            *QUICK[:-1]]
    done = _python(f"import sys; from modelport.cli import main; code = main({argv!r}); "
                   "assert 'ray' not in sys.modules, 'ray was imported'; sys.exit(code)")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((report / "report.json").read_text())["rows"]
    events = [json.loads(x) for x in (tmp_path / "ev").read_text().splitlines()]
    assert {r["machine"] for r in rows} == {"here"}
    assert len(rows) == 4, (events, done.stderr[-3000:])
    assert [e["status"] for e in events if e["event"] == "build"] == ["cached"]


def test_device_side_imports_no_torch(digits_sweep):
    bundle = next((digits_sweep[0] / "builds").glob("*/onnxruntime-cpu-fp32.tar.gz"))
    code = f"""
import sys
from pathlib import Path
from modelport.sweep import device_tasks
from modelport.sweep.outcomes import BundleBlob
from modelport.sweep.payload import sha256
probe = device_tasks.probe(["onnxruntime:cpu:fp32", "openvino:cpu:fp32"])
data = Path({str(bundle)!r}).read_bytes()
blob = BundleBlob("onnxruntime:cpu:fp32", "b.tar.gz", sha256(data), data)
got = device_tasks.bench_blob("dev", blob, {{"iters": 3, "duration": None, "warmup": 1}})
assert got.row["status"] == "ok", got.row
assert probe["unavailable"] == {{"onnxruntime:cpu:fp32": None, "openvino:cpu:fp32": None}}
heavy = sorted(m for m in ("torch", "onnx", "nncf", "tensorflow") if m in sys.modules)
assert not heavy, heavy
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr[-3000:]
