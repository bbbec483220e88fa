"""Helpers for the error catalog tests: tiny real models, and the checks every row makes.

Every row checks the same four things: the CLI prints exactly one ``error: ...`` line naming the
problem (and the fix), exits 2 (1 for internal errors), prints no traceback, and leaves no
partial output behind (no half bundle, no ``.tmp-``/``.old-`` dirs, no temp dirs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

FP32 = "onnxruntime:cpu:fp32"
INT8 = "onnxruntime:cpu:int8"

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("fault_driver.py")
LEFTOVER_MARKS = (".tmp-", ".old-", "modelport-export-", "modelport-ort-", "modelport-bundle-")


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> str:
    """One ``error:`` line containing every fragment, the exit code, and no traceback."""
    err = proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode}, wanted {code}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err[-3000:]
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def assert_nothing_half_written(*roots: Path) -> None:
    """No temp leftovers under ``roots``; every bundle-looking folder opens and verifies."""
    from modelport.bundle import open_bundle

    for root in roots:
        if not root.exists():
            continue
        for path in root.rglob("*"):
            assert not any(m in path.name for m in LEFTOVER_MARKS), f"leftover {path}"
        for manifest in root.rglob("manifest.json"):
            open_bundle(manifest.parent)  # raises if incomplete or modified
        for folder in (p for p in root.rglob("*") if p.is_dir()):
            if folder.name.count("-") == 2 and not (folder / "manifest.json").exists():
                raise AssertionError(f"half a bundle: {folder} has no manifest.json")


def cli_env(tmp: Path) -> dict[str, str]:
    """A private TMPDIR for the child, so temp leftovers can be checked."""
    tmp.mkdir(parents=True, exist_ok=True)
    return {"TMPDIR": str(tmp)}


def run_driver(*args: str, env: dict | None = None, timeout: float = 600,
               preamble: str = "") -> subprocess.CompletedProcess:
    """The real CLI through tests/support/fault_driver.py (faults injected at named functions)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(DRIVER), *args], check=False, capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=ROOT)


def run_blocked(modules: list[str], *args: str, env: dict | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    """The real CLI with ``modules`` made unimportable (as if not installed)."""
    code = ("import sys\n"
            + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
            + "from modelport.cli import main\nsys.exit(main())\n")
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", code, *args], check=False, capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=ROOT)


# -- tiny real models ---------------------------------------------------------------------------
def write_tiny_onnx(path: Path, *, vocab: int = 16, max_positions: int = 8, dim: int = 4) -> Path:
    """Token + position embedding, mean-pooled: int64 ids [batch, seq] -> float [batch, dim].

    Small enough to export in well under a second, yet it has what real models have: a
    dynamic sequence axis bounded by a position table, and an index input bounded by a vocab.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def const(name, value):
        return numpy_helper.from_array(np.asarray(value), name)

    nodes = [
        helper.make_node("Gather", ["tok", "ids"], ["t"], name="token_gather"),
        helper.make_node("Shape", ["ids"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "one"], ["seq"], name="seq_len", axis=0),
        helper.make_node("Range", ["zero", "seq", "one"], ["positions"], name="range"),
        helper.make_node("Gather", ["pos", "positions"], ["p"], name="position_gather"),
        helper.make_node("Add", ["t", "p"], ["s"], name="add"),
        helper.make_node("ReduceMean", ["s", "axes"], ["embedding"], name="pool", keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        [const("tok", rng.standard_normal((vocab, dim)).astype(np.float32)),
         const("pos", rng.standard_normal((max_positions, dim)).astype(np.float32)),
         const("one", np.int64(1)), const("zero", np.int64(0)),
         const("axes", np.array([1], dtype=np.int64))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def write_single_op_onnx(path: Path, op: str, elem_type: int, *, domain: str = "",
                         node_name: str = "n0") -> Path:
    """A one-node graph ``y = op(x)``, for ops a runtime may not support."""
    import onnx
    from onnx import helper

    opsets = [helper.make_opsetid("", 18)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], name=node_name, domain=domain or None)], "one_op",
        [helper.make_tensor_value_info("x", elem_type, ["batch", 4])],
        [helper.make_tensor_value_info("y", elem_type, ["batch", 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path


MLP_FACTORY = '''
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, features):
        return self.net(features)


def make():
    torch.manual_seed(0)
    return MLP().eval(), {"features": torch.randn(2, 12)}


def make_positional():
    torch.manual_seed(0)
    return MLP().eval(), (torch.randn(2, 12),)


def boom():
    raise RuntimeError("weights file is corrupt")


def wrong_type():
    return "not a module", {"features": torch.randn(2, 12)}


def no_examples():
    return MLP(), None


def bad_examples():
    return MLP(), {"features": torch.randn(2, 7)}


@torch.library.custom_op("userlib::wobble", mutates_args=())
def wobble(x: torch.Tensor) -> torch.Tensor:
    return x.sin() * 2


@wobble.register_fake
def _(x):
    return torch.empty_like(x)


class Wobble(nn.Module):
    def forward(self, x):
        return wobble(x)


class WithCustomOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(12, 12), Wobble())
        self.head = nn.Linear(12, 3)

    def forward(self, features):
        return self.head(self.encoder(features))


def custom_op():
    return WithCustomOp().eval(), {"features": torch.randn(2, 12)}


class Big(nn.Module):
    """Weights well above a lowered external-data threshold (the > 2 GB path, scaled down)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(256, 512)
        self.out = nn.Linear(512, 4)

    def forward(self, features):
        return self.out(torch.relu(self.fc(features)))


def big():
    torch.manual_seed(0)
    return Big().eval(), {"features": torch.randn(2, 256)}
'''


def write_mlp_factory(path: Path) -> Path:
    path.write_text(MLP_FACTORY)
    return path


def write_feeds(folder: Path, n: int, *, name: str = "features", dim: int = 12,
                dtype=np.float32, seed: int = 0) -> Path:
    """``n`` single-sample .npz feed files for the MLP factory."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        np.savez(folder / f"s{i:03d}.npz", **{name: rng.standard_normal((1, dim)).astype(dtype)})
    return folder

