"""The layout's promises, checked: a backend added by following docs/architecture.md (one folder
+ one registry line) gets its CLI flags, its options validated and its builds run, with no edit
to the CLI package; the package has no import cycle; importing modelport stays lean."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT

TOY_OPTIONS = '''
from __future__ import annotations

from dataclasses import dataclass

from modelport.backends.options import BackendOptions, option


@dataclass(frozen=True)
class ToyOptions(BackendOptions):
    note: str | None = option(help="a note the toy backend writes into its manifest")
    level: int = option(1, minimum=1, maximum=3, help="how hard the toy tries (1-3)")
'''

TOY_BACKEND = '''
from __future__ import annotations

import shutil
from pathlib import Path

from modelport.backends.base import Artifact, Availability, Backend, has_module
from toybackends.toy.options import ToyOptions


class ToyBackend(Backend):
    """Ships the validated ONNX and runs it with ONNX Runtime: the smallest real backend."""

    name = "toy"
    extra = "onnxruntime"
    Options = ToyOptions

    @classmethod
    def availability(cls, target):
        if not has_module("onnxruntime"):
            return Availability.missing("onnxruntime not installed")
        return Availability.yes()

    @classmethod
    def runtime_version(cls):
        return "toy-1"

    def build(self, model, target, calib, workdir, options):
        opts = options.of(self)
        shutil.copyfile(model.onnx_artifact.path, Path(workdir) / "model.onnx")
        return Artifact(Path(workdir), "model.onnx", ["model.onnx"],
                        {"note": opts.note, "level": opts.level})

    def load(self, path, *, target, inputs, outputs, threads=None, **options):
        from modelport.backends.onnxruntime.backend import OnnxRuntimeSession

        return OnnxRuntimeSession(path, inputs, outputs, threads=threads)
'''

DRIVER = '''
import sys
sys.path.insert(0, sys.argv[1])
from modelport import registry
registry.register(registry.BackendEntry(
    "toy", "toybackends.toy.backend:ToyBackend", ("cpu:fp32",), "a toy backend"))
from modelport.cli import main
sys.exit(main(sys.argv[2:]))
'''

MLP = '''
import torch

def make():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return model.eval(), torch.randn(4, 6)
'''


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("toy")
    folder = root / "toybackends" / "toy"  # step 1: one folder
    folder.mkdir(parents=True)
    (root / "toybackends" / "__init__.py").write_text("")
    (folder / "__init__.py").write_text("")
    (folder / "options.py").write_text(textwrap.dedent(TOY_OPTIONS))  # step 2
    (folder / "backend.py").write_text(textwrap.dedent(TOY_BACKEND))  # step 3
    (root / "driver.py").write_text(textwrap.dedent(DRIVER))  # step 4: one registry line
    (root / "mlp.py").write_text(textwrap.dedent(MLP))
    return root, root / "driver.py"


def _run(toy, *args: str) -> subprocess.CompletedProcess:
    root, driver = toy
    return subprocess.run([sys.executable, str(driver), str(root), *args], capture_output=True,
                          check=False, text=True, timeout=600, cwd=ROOT)


@pytest.mark.onnxruntime
def test_toy_backend_gets_its_flags_from_its_options(toy):
    proc = _run(toy, "export", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--toy-note" in proc.stdout and "--toy-level" in proc.stdout
    assert "a note the toy backend writes" in proc.stdout


@pytest.mark.onnxruntime
def test_toy_backend_builds_with_its_typed_options(toy, tmp_path):
    root, _ = toy
    out = tmp_path / "out"
    proc = _run(toy, "-q", "export", f"{root / 'mlp.py'}:make", "--target", "toy:cpu:fp32",
                "--toy-note", "hello", "--toy-level", "3", "--no-bench", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "toy-cpu-fp32" / "manifest.json").read_text())
    assert manifest["build"]["note"] == "hello" and manifest["build"]["level"] == 3
    assert manifest["build"]["options"] == {"note": "hello", "level": 3}
    assert manifest["accuracy"]["metrics"]["cosine_mean"] > 0.9999


@pytest.mark.onnxruntime
def test_toy_backend_option_out_of_range_is_one_line(toy, tmp_path):
    root, _ = toy
    proc = _run(toy, "export", f"{root / 'mlp.py'}:make", "--target", "toy:cpu:fp32",
                "--toy-level", "9", "--no-bench", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--toy-level" in lines[0] and "<= 3" in lines[0], proc.stderr
    assert not (tmp_path / "o").exists()


def test_python_options_are_checked_before_any_work(tmp_path):
    import modelport
    from modelport.errors import UsageError

    with pytest.raises(UsageError, match=r"unknown option 'int8_mod'; did you mean 'int8_mode'"):
        modelport.export("builtin:digits-cnn", ["onnxruntime:cpu:int8"], out=tmp_path,
                         options={"onnxruntime": {"int8_mod": "static"}}, progress=False)
    with pytest.raises(UsageError, match="int8_mode.*one of static, dynamic"):
        modelport.export("builtin:digits-cnn", ["onnxruntime:cpu:int8"], out=tmp_path,
                         options={"onnxruntime": {"int8_mode": "fast"}}, progress=False)
    with pytest.raises(UsageError, match="unknown backend 'onnxrt'"):
        modelport.export("builtin:digits-cnn", ["onnxruntime:cpu:int8"], out=tmp_path,
                         options={"onnxrt": {}}, progress=False)
    assert not any(tmp_path.iterdir())


def test_package_has_no_import_cycle():
    tool = ROOT.parent / "shared" / "tools" / "structure_check.py"
    if not tool.is_file():
        pytest.skip(f"{tool} is not in this checkout")
    proc = subprocess.run([sys.executable, str(tool), str(ROOT / "src" / "modelport")],
                          capture_output=True, check=False, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1].startswith("ok:"), proc.stdout
