"""A device's install (`modelport[onnxruntime]`: no torch, no transformers) runs a classifier
bundle made from a Hugging Face folder and prints its labels."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import run_cli
from tests.models.checkpoints import TEXTS

pytestmark = [pytest.mark.slow, pytest.mark.onnxruntime]


def test_runtime_only_install_prints_labels(runtime_only_python, hf_bundles, tmp_path):
    bundle = str(hf_bundles["bert-multilabel"]["onnxruntime:cpu:fp32"])
    device_json, build_json = tmp_path / "device.json", tmp_path / "build.json"
    proc = subprocess.run(
        [str(runtime_only_python), "-m", "modelport.cli", "run", bundle, "--text", TEXTS[0],
         "--text", TEXTS[2], "--json", str(device_json)],
        check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    here = run_cli("run", bundle, "--text", TEXTS[0], "--text", TEXTS[2], "--json",
                   str(build_json))
    assert here.returncode == 0, here.stderr
    assert proc.stdout == here.stdout  # the same labels and scores as on the build machine
    assert json.loads(device_json.read_text())["predictions"][0]["labels"]
    probe = subprocess.run(
        [str(runtime_only_python), "-c", ("import importlib.util as u; print([u.find_spec(m) "
                                          "is None for m in ('torch', 'transformers', 'PIL')])")],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert probe.stdout.strip() == "[True, True, True]", probe.stderr
