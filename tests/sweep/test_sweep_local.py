"""The same command without --ray (no Ray imported), and device-side code without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.sweep.conftest import QUICK, TARGETS

pytestmark = [pytest.mark.ray, pytest.mark.onnxruntime, pytest.mark.openvino]


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
