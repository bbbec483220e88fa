"""Honesty of compression: the best epoch is chosen on a validation slice carved from the
calibration split (never the eval split), and every recipe key is checked against its typed
declaration before any model loads, with one line naming the file, the key and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib

import pytest

from modelport.errors import CalibrationDataError, UsageError


def _digests(data) -> set[str]:
    return {hashlib.sha256(b"".join(v.tobytes() for v in s.values())).hexdigest()
            for s in data.samples}


@pytest.fixture(scope="module")
def small_digits():
    """builtin:digits-cnn in torch (no ONNX export needed here) and its calib/eval split."""
    from modelport.models import resolve_model

    model = resolve_model("builtin:digits-cnn")
    return model, model.default_data()


def test_best_epoch_is_chosen_on_a_validation_slice_never_on_the_eval_split(small_digits,
                                                                             monkeypatch):
    """Spy on every set the training loop runs the model on: the eval split's samples never
    appear, the validation slice is disjoint from what is trained on, and the report says how
    many rows chose the epoch."""
    from modelport.passes import contract, train
    from modelport.passes.contract import PassContext, TrainSettings, run_pass
    from modelport.passes.distill import Distill

    model, (calib, evalset) = small_digits
    seen_in_fit: list = []
    real_predict = train.predict

    def spy_predict(module, data, *args, **kwargs):
        seen_in_fit.append(data)
        return real_predict(module, data, *args, **kwargs)

    real_metrics_on = contract.PassContext.metrics_on

    def spy_metrics_on(self, module, data, ref):
        seen_in_fit.append(data)
        return real_metrics_on(self, module, data, ref)

    monkeypatch.setattr(train, "predict", spy_predict)
    ctx = PassContext(task=model.task, calib=calib, eval=evalset,
                      teacher=copy.deepcopy(model.module).eval(), progress=False,
                      train=TrainSettings(epochs=3, lr=1e-3, patience=None, max_steps=12,
                                          batch_size=32))
    student = copy.deepcopy(model.module)
    # run_pass itself evaluates on the eval split for the report: patch only around apply
    real_apply = Distill.apply

    def apply_with_spy(self, m, c):
        monkeypatch.setattr(contract.PassContext, "metrics_on", spy_metrics_on)
        try:
            return real_apply(self, m, c)
        finally:
            monkeypatch.setattr(contract.PassContext, "metrics_on", real_metrics_on)

    monkeypatch.setattr(Distill, "apply", apply_with_spy)
    _, report = run_pass(Distill(max_steps=12), student, ctx)

    eval_rows = _digests(evalset)
    assert seen_in_fit, "the training loop ran the model on no data"
    for data in seen_in_fit:
        assert data is not evalset
        assert not _digests(data) & eval_rows, f"selection saw eval rows via {data.source}"
    validation = [d for d in seen_in_fit if d.source.endswith("[validation]")]
    assert validation, "no validation slice was scored"
    val_rows = _digests(validation[0])
    train_rows = _digests(calib) - val_rows
    assert val_rows <= _digests(calib) and train_rows
    assert report.validation_samples == len(validation[0]) > 0
    assert report.details["validation_samples"] == report.validation_samples
    assert report.details["train_samples"] + report.validation_samples == len(calib)
    assert all("validation" in h for h in report.details["history"])
    assert report.metric_after  # the eval split still reports the result


def test_validation_slice_is_deterministic_and_too_little_data_says_how_much(small_digits):
    from modelport.passes.contract import MIN_TRAIN_FOR_VALIDATION, PassContext, holdout
    from modelport.passes.train import fit

    model, (calib, _) = small_digits
    a = holdout(PassContext(task=model.task, calib=calib, seed=0))
    b = holdout(PassContext(task=model.task, calib=calib, seed=0))
    assert _digests(a.validation) == _digests(b.validation)
    assert len(a.calib) + len(a.validation) == len(calib)
    tiny = PassContext(task=model.task, calib=calib.take(5), progress=False,
                       teacher=copy.deepcopy(model.module).eval())
    with pytest.raises(CalibrationDataError, match=f"at least {MIN_TRAIN_FOR_VALIDATION} "
                                                    "training samples.*got 5"):
        fit(copy.deepcopy(model.module), tiny)


# -- typed recipe checks ------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "message"), [
    ("passes:\n  - prune-structured: {ratoi: 0.5}\n",
     r"pass 'prune-structured': unknown option 'ratoi'; did you mean 'ratio'\?"),
    ("passes:\n  - prune-structured: {ratio: 1.5}\n",
     r"pass 'prune-structured': option 'ratio' must be < 1; got 1.5"),
    ("passes:\n  - distill: {epochs: three}\n",
     r"pass 'distill': option 'epochs' takes int, got str 'three'"),
    ("passes:\n  - qat: {weight_bits: 4}\n", r"option 'weight_bits' takes one of 7, 8; got 4"),
    ("passes:\n  - low-rank: {skip_last: 3}\n", r"option 'skip_last' takes bool, got int 3"),
    ("train: {epohcs: 2}\npasses: [distill]\n",
     r"train: unknown setting 'epohcs'; did you mean 'epochs'\?"),
    ("train: {lr: 0}\npasses: [distill]\n", r"train: option 'lr' must be > 0; got 0"),
    ("train: {batch_size: 2.5}\npasses: [distill]\n", r"option 'batch_size' takes int"),
    ("pases: [distill]\n", r"unknown key 'pases'; did you mean 'passes'\?"),
    ("seed: -1\npasses: [distill]\n", r"'seed' takes an int >= 0"),
    ("passes: [{layer-drop: {keep: grady}}]\n", r"option 'keep' takes a list of block indices"),
])
def test_recipe_values_are_checked_against_their_declarations(tmp_path, text, message):
    from modelport.passes.recipes import load_recipe

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message) as info:
        load_recipe(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_yaml_exponent_floats_are_read_as_numbers(tmp_path):
    """PyYAML reads 1e-3 as a string (YAML 1.1); a float field takes it as the number."""
    from modelport.passes.recipes import load_recipe

    path = tmp_path / "ok.yaml"
    path.write_text("train: {lr: 1e-3}\npasses:\n  - distill: {lr: 2e-4, temperature: 2}\n")
    recipe = load_recipe(path)
    assert recipe["train"]["lr"] == 1e-3
    assert recipe["passes"][0]["options"] == {"lr": 2e-4, "temperature": 2}


def test_pass_options_are_checked_from_python_too():
    from modelport.passes.distill import Distill
    from modelport.passes.prune_unstructured import MagnitudePrune

    with pytest.raises(UsageError, match="option 'amount' must be < 1"):
        MagnitudePrune(amount=1.0)
    with pytest.raises(UsageError, match="option 'augment' must be >= 0"):
        Distill(augment=-1)


def test_cli_compress_bad_recipe_exits_2_with_one_line_before_loading_a_model(tmp_path):
    from tests.conftest import run_cli

    path = tmp_path / "bad.yaml"
    path.write_text("model: builtin:digits-cnn\npasses:\n  - prune-structured: {ratio: 2}\n")
    r = run_cli("-q", "compress", "--recipe", str(path), "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert str(path) in r.stderr and "'ratio' must be < 1" in r.stderr
    assert not (tmp_path / "out").exists()
