"""A budget that sees decisions: a classifier's logits without labels are judged by top-1
agreement with the reference as well as cosine; embeddings (declared, or unit-norm reference
rows) and regression outputs by cosine; the manifest and the table name the metric that judged."""

from __future__ import annotations

import json
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

import modelport
from modelport.errors import AccuracyBudgetExceeded, ModelLoadError, UsageError
from modelport.metrics import Budget, budget_misses, fidelity, judged_by
from tests.conftest import run_cli

#: 10 real classes whose scores differ by ~0.01, next to a constant -100 "background" score: the
#: logit vectors point the same way whatever the small scores do (cosine ~1), while any INT8
#: grid that must hold -100 (a step >= 100/255) rounds the ten scores to one value, a tie that
#: argmax breaks towards class 0. The Add keeps its quantized input on every ONNX Runtime
#: build, also when a fallback keeps the Linear in float.
FACTORIES = """
import torch
from torch import nn


class Margins(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(11, 11)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(11) * 0.01)
            self.fc.bias.zero_()

    def forward(self, x):
        return x + self.fc(x)


class Normalized(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(11, 8)

    def forward(self, x):
        return nn.functional.normalize(self.fc(x), dim=-1)


def margins():
    return Margins().eval(), torch.zeros(2, 11)


def margins_regression():
    return Margins().eval(), torch.zeros(2, 11), None, "regression"


def normalized():
    return Normalized().eval(), torch.zeros(2, 11)


def normalized_logits():
    return Normalized().eval(), torch.zeros(2, 11), "logits"


def bad_kind():
    return Margins().eval(), torch.zeros(2, 11), "scores"
"""


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """(the factories' file, a --calib folder of feeds: 10 small scores and a -100)."""
    root = tmp_path_factory.mktemp("decisions")
    path = root / "models.py"
    path.write_text(textwrap.dedent(FACTORIES))
    calib = root / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        x = np.concatenate([rng.uniform(-0.01, 0.01, (16, 10)), np.full((16, 1), -100.0)],
                           axis=1).astype(np.float32)
        np.savez(calib / f"feed{i:02d}.npz", x=x)
    return path, calib


# -- the verdict on measured numbers -----------------------------------------------------------
def test_top1_agreement_judges_unlabelled_logits_that_cosine_would_pass():
    rng = np.random.default_rng(1)
    ref = np.concatenate([rng.normal(0, 0.01, (200, 10)), np.full((200, 1), -100.0)], axis=1)
    got = ref.copy()
    got[:, :10] = 0.0  # the small scores rounded away: every decision is now class 0
    metrics = fidelity({"logits": got}, {"logits": ref}, task="classification")
    assert metrics["cosine_mean"] > 0.9999 and metrics["top1_agreement"] < 0.5
    misses = budget_misses(metrics, Budget())
    assert len(misses) == 1 and misses[0].startswith("top-1 agreement")
    assert judged_by(metrics) == "top-1 agreement + cosine"
    # the same outputs judged as an embedding / regression output: cosine only, and it passes
    generic = fidelity({"logits": got}, {"logits": ref}, task="generic")
    assert budget_misses(generic, Budget()) == [] and judged_by(generic) == "cosine"
    # labels known: the accuracy drop judges, as before
    labels = ref.argmax(-1)
    labelled = fidelity({"logits": got}, {"logits": ref}, task="classification", labels=labels)
    assert judged_by(labelled) == "accuracy drop"
    assert budget_misses(labelled, Budget())[0].startswith("accuracy")
    assert budget_misses(metrics, Budget(min_top1_agreement=0.05)) == []


@pytest.mark.parametrize("value", [0, -0.5, 1.5])
def test_min_top1_agreement_out_of_range_is_refused(value):
    with pytest.raises(UsageError, match=r"--min-top1-agreement is a fraction in \(0, 1\]"):
        Budget(min_top1_agreement=value)


def test_openvino_accuracy_control_optimizes_the_metric_that_judges():
    from modelport.backends.openvino.options import OpenVINOOptions
    from modelport.backends.openvino.quantize import ac_settings

    budget = Budget(min_top1_agreement=0.97, min_cosine=0.98, max_accuracy_drop=0.02)
    unlabelled, labelled = SimpleNamespace(labels=None), SimpleNamespace(labels=np.zeros(3))
    classifier, embedder = SimpleNamespace(task="classification"), SimpleNamespace(task="embedding")
    options = OpenVINOOptions()
    assert ac_settings(classifier, unlabelled, options, budget) == \
        ("top1", "top1_agreement", pytest.approx(0.03))
    assert ac_settings(classifier, labelled, options, budget) == ("accuracy", "accuracy", 0.02)
    assert ac_settings(embedder, unlabelled, options, budget)[:2] == ("cosine", "cosine_mean")
    with pytest.raises(UsageError, match="top-1 agreement needs a classifier"):
        ac_settings(embedder, unlabelled, OpenVINOOptions(accuracy_metric="top1"), budget)


# -- what the output is: declared, said, or seen in the reference ------------------------------
def test_factory_declares_its_output_kind(user):
    from modelport.models import resolve_model

    path, _ = user
    guessed = resolve_model(f"{path}:margins")
    assert (guessed.task, guessed.task_from, guessed.output_kind) == \
        ("classification", "output shape", None)
    declared = resolve_model(f"{path}:margins_regression")  # after dynamic_axes (None here)
    assert (declared.task, declared.output_kind) == ("generic", "regression")
    assert resolve_model(f"{path}:normalized_logits").task == "classification"  # kind alone
    with pytest.raises(ModelLoadError, match="output kind 'scores' is not one of logits, "
                                             "embedding, regression"):
        resolve_model(f"{path}:bad_kind")


@pytest.mark.onnxruntime
def test_decision_budget_refuses_int8_that_changes_decisions(user, tmp_path):
    path, calib = user
    with pytest.raises(AccuracyBudgetExceeded, match="top-1 agreement") as info:
        modelport.export(f"{path}:margins", ["onnxruntime:cpu:int8"], out=tmp_path / "b",
                         calib=calib, bench=None, progress=False)
    row = next(r for r in info.value.result.rows if r["target"] == "onnxruntime:cpu:int8")
    assert row["judged_by"] == "top-1 agreement + cosine"
    assert row["fidelity"]["cosine_mean"] >= Budget().min_cosine  # cosine alone would ship it
    assert row["fidelity"]["top1_agreement"] < Budget().min_top1_agreement
    assert "decisions" in info.value.result.table()
    assert not (tmp_path / "b" / "onnxruntime-cpu-int8").exists()

    # the same model said to be a regression: judged by cosine, shipped, and the manifest says so
    result = modelport.export(f"{path}:margins", ["onnxruntime:cpu:int8"], out=tmp_path / "r",
                              calib=calib, bench=None, progress=False,
                              budget=Budget(output_kind="regression"))
    manifest = json.loads((result.bundles["onnxruntime:cpu:int8"] / "manifest.json").read_text())
    assert manifest["accuracy"]["judged_by"] == "cosine" and manifest["accuracy"]["passed"]
    assert manifest["model"]["output_kind"] == "regression"
    assert manifest["model"]["task_from"] == "--output-kind"
    assert manifest["accuracy"]["budget"]["min_top1_agreement"] == 0.99


@pytest.mark.onnxruntime
def test_unit_norm_rows_are_an_embedding_judged_by_cosine(user, tmp_path):
    path, calib = user
    proc = run_cli("-q", "export", f"{path}:normalized", "--target", "onnxruntime:cpu:fp32",
                   "--calib", str(calib), "--no-bench", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "onnxruntime-cpu-fp32" / "manifest.json").read_text())
    assert manifest["model"]["task"] == "embedding"
    assert manifest["model"]["task_from"] == "unit-norm reference rows"
    assert manifest["accuracy"]["judged_by"] == "cosine"
    assert "judged by" in proc.stdout and "decisions" not in proc.stdout  # no decisions to count
    # --output-kind overrides the guess: the same rows counted as a classifier's decisions
    proc = run_cli("-q", "export", f"{path}:normalized", "--target", "onnxruntime:cpu:fp32",
                   "--calib", str(calib), "--no-bench", "--out", str(tmp_path / "l"),
                   "--output-kind", "logits")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "l" / "onnxruntime-cpu-fp32" / "manifest.json").read_text())
    assert manifest["model"]["task"] == "classification"
    assert manifest["accuracy"]["judged_by"] == "top-1 agreement + cosine"
    assert "decisions" in proc.stdout and "100.0%" in proc.stdout


@pytest.mark.parametrize("flags, message", [
    (["--output-kind", "scores"], ("error: --output-kind takes one of logits, embedding, "
                                   "regression, got 'scores'")),
    (["--min-top1-agreement", "0"], "error: --min-top1-agreement is a fraction in (0, 1]"),
    (["--min-top1-agreement", "99"], "error: --min-top1-agreement is a fraction in (0, 1]"),
])
def test_bad_budget_flags_are_one_line_errors(flags, message, tmp_path):
    proc = run_cli("export", "builtin:digits-cnn", "--target", "onnxruntime:cpu:fp32",
                   "--no-bench", "--out", str(tmp_path / "b"), *flags)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message) and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_export_table_shows_decisions_and_the_judging_metric():
    from modelport.bench.export_table import export_table

    ref = {"target": "torch:cpu:fp32", "precision": "fp32", "status": "reference",
           "reference": True}
    row = {"target": "onnxruntime:cpu:int8", "precision": "int8", "status": "ok",
           "judged_by": "top-1 agreement + cosine",
           "fidelity": {"cosine_mean": 0.9991, "cosine_min": 0.99, "max_abs_err": 0.1,
                        "top1_agreement": 0.994}}
    lines = export_table([ref, row]).splitlines()
    assert "decisions" in lines[0] and "judged by" in lines[0]
    assert "99.4%" in lines[3] and "top-1 agreement + cosine" in lines[3]


def test_sweep_takes_the_output_kind_into_its_builds_and_cache_keys(tmp_path):
    from modelport.sweep.plan import plan_builds
    from modelport.sweep.run import make_spec

    plain = make_spec(["builtin:digits-cnn"], ["onnxruntime:cpu:int8"], [], None, None, {})
    said = make_spec(["builtin:digits-cnn"], ["onnxruntime:cpu:int8"], [], None, None, {},
                     output_kind="regression")
    job, = plan_builds(said, ["x86_64:avx2"])
    assert job.output_kind == "regression"
    assert job.key != plan_builds(plain, ["x86_64:avx2"])[0].key  # a cached verdict is not reused
    proc = run_cli("sweep", "builtin:digits-cnn", "--targets", "onnxruntime:cpu:fp32",
                   "--report", str(tmp_path / "r"), "--output-kind", "scores")
    assert proc.returncode == 2 and proc.stderr.startswith("error: --output-kind takes one of")
    assert not (tmp_path / "r").exists()


@pytest.mark.onnxruntime
def test_bench_model_reports_the_kind_it_judged(user, tmp_path):
    path, calib = user
    proc = run_cli("-q", "bench", f"{path}:normalized", "--targets", "onnxruntime:cpu:fp32",
                   "--calib", str(calib), "--iters", "2", "--warmup", "1", "--batch", "1",
                   "--no-plot", "--report", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    # the unit-norm rows made it an embedding: not the resolver's shape guess (classification)
    assert report["model"]["task"] == "embedding"
    assert "top1_agreement" not in report["rows"][1]["fidelity"]
