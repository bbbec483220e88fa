"""Compression passes on real small models (digits-cnn; MiniLM where it matters).

Every test checks a number that would be wrong if the pass were: losses against a hand
computation, tensors that really shrink, counts that match an independent count, full-rank
factorization that reproduces the layer, distillation that beats no distillation.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from modelport.errors import ModelLoadError, UsageError


def _ctx(model, data, *, teacher=True, teacher_eval=None, **train):
    from modelport.passes.compress_steps import flop_example
    from modelport.passes.contract import PassContext, TrainSettings

    calib, evalset = data
    t = copy.deepcopy(model.module).eval() if teacher else None
    return PassContext(task=model.task, calib=calib, eval=evalset, teacher=t,
                       train=TrainSettings(**train), progress=False,
                       example=flop_example(model), _teacher_eval=_known(teacher_eval))


def _known(teacher_eval):
    """PassContext's cache of the teacher's eval-split outputs, filled from a fixture."""
    return None if teacher_eval is None else {"out": teacher_eval.copy()}


@pytest.fixture(scope="module")
def minilm_teacher_eval(minilm, minilm_data):
    """The MiniLM teacher's outputs on the eval split, computed once for this module (each
    PassContext would compute exactly these on its first evaluate)."""
    from modelport.passes.contract import predict

    return predict(copy.deepcopy(minilm.module).eval(), minilm_data[1])


# -- losses ------------------------------------------------------------------------------------
def test_kd_loss_equals_hand_computation_and_gradients_reach_the_student():
    import torch

    from modelport.passes.train import kd_loss

    torch.manual_seed(0)
    student = torch.randn(5, 10, requires_grad=True)
    teacher = torch.randn(5, 10) * 3
    labels = torch.tensor([1, 2, 3, 4, 5])
    T, alpha = 3.0, 0.7
    loss = kd_loss(student, teacher, temperature=T, alpha=alpha, labels=labels)

    s, t = student.detach().double().numpy() / T, teacher.double().numpy() / T
    log_ps = s - np.log(np.exp(s).sum(1, keepdims=True))
    log_pt = t - np.log(np.exp(t).sum(1, keepdims=True))
    kl = (np.exp(log_pt) * (log_pt - log_ps)).sum(1).mean()
    raw = student.detach().double().numpy()
    log_p = raw - np.log(np.exp(raw).sum(1, keepdims=True))
    ce = -log_p[np.arange(5), labels.numpy()].mean()
    assert float(loss) == pytest.approx(kl * T * T + alpha * ce, rel=1e-5)

    loss.backward()  # a loss computed under no_grad (or on detached logits) has no grad here
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    # the gradient of the soft term is (softmax(s/T) - softmax(t/T)) * T / batch
    student.grad = None
    kd_loss(student, teacher, temperature=T, alpha=0.0).backward()
    want = (np.exp(log_ps) - np.exp(log_pt)) * T / 5
    np.testing.assert_allclose(student.grad.numpy(), want, rtol=1e-4, atol=1e-7)


def test_kd_loss_is_zero_when_student_matches_teacher():
    import torch

    from modelport.passes.train import kd_loss

    logits = torch.randn(4, 7)
    assert float(kd_loss(logits.clone().requires_grad_(), logits, temperature=2.0)) \
        == pytest.approx(0.0, abs=1e-6)


def test_embedding_losses_equal_hand_computation():
    import torch

    from modelport.passes.train import embedding_loss

    a = torch.randn(6, 8, requires_grad=True)
    b = torch.randn(6, 8)
    an, bn = a.detach().numpy(), b.numpy()
    cos = (an * bn).sum(1) / (np.linalg.norm(an, axis=1) * np.linalg.norm(bn, axis=1))
    loss = embedding_loss(a, b, kind="cosine")
    assert float(loss) == pytest.approx(float((1 - cos).mean()), rel=1e-5)
    loss.backward()
    assert float(a.grad.abs().sum()) > 0
    assert float(embedding_loss(a, b, kind="mse")) == pytest.approx(float(((an - bn) ** 2).mean()),
                                                                    rel=1e-5)


# -- structured pruning ------------------------------------------------------------------------
def test_structured_pruning_shrinks_tensors_and_the_report_matches_a_recount(digits, digits_data):
    import torch
    from torch import nn

    from modelport.passes.contract import count_flops, run_pass
    from modelport.passes.prune_structured import StructuredPrune

    ctx = _ctx(digits, digits_data)
    student = copy.deepcopy(digits.module)
    student, report = run_pass(StructuredPrune(ratio=0.5), student, ctx)
    convs = [m for m in student.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in student.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [c.weight.shape[0] for c in convs] == [8, 16, 32]  # half of 16, 32, 64
    assert [c.weight.shape[1] for c in convs] == [1, 8, 16]  # next layer's inputs follow
    assert [b.num_features for b in bns] == [8, 16, 32] and bns[2].running_mean.shape == (32,)
    assert student.classifier.weight.shape == (10, 32)  # outputs kept, inputs follow
    assert report.params_after == sum(p.numel() for p in student.parameters())
    assert report.params_before == sum(p.numel() for p in digits.module.parameters())
    assert report.params_after < report.params_before / 3
    assert report.flops_after == count_flops(student, ctx.example) < report.flops_before / 3
    out = student(torch.from_numpy(digits_data[1].stacked()["image"]))
    assert out.shape == (len(digits_data[1]), 10) and torch.isfinite(out).all()


def test_ffn_pruning_shrinks_bert_intermediate_layers(minilm):
    from modelport.passes.contract import PassContext
    from modelport.passes.prune_structured import StructuredPrune, ffn_blocks

    student = copy.deepcopy(minilm.module)
    ctx = PassContext(task="embedding", progress=False)
    StructuredPrune(ratio=0.75).apply(student, ctx)
    blocks = ffn_blocks(student)
    assert len(blocks) == 6
    for _, up, down in blocks:
        assert up.weight.shape == (384, 384) and down.weight.shape == (384, 384)  # 1536 -> 384
    feeds = minilm.fresh_inputs(2)
    import torch

    with torch.no_grad():
        out = student(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    assert out.shape == (2, 384) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


@pytest.mark.onnxruntime
def test_head_pruning_shrinks_attention_reloads_and_exports(minilm, tmp_path):
    """Half the heads of every block: q/k/v lose head-sized row blocks, the attention output
    loses the same columns; the saved directory rebuilds it from the weights alone and the
    exported ONNX agrees with it in ORT."""
    import torch

    import modelport
    from modelport.models import resolve_model
    from modelport.passes import compress
    from modelport.passes.prune_structured import attention_blocks

    recipe = {"name": "heads-half", "model": "builtin:minilm",
              "passes": [{"prune-structured": {"ratio": 0.0, "heads": 0.5}}]}
    result = compress("builtin:minilm", recipe, out=tmp_path / "heads", progress=False)
    blocks = attention_blocks(result.module)
    assert len(blocks) == 6
    for _, attn, out in blocks:  # 12 heads of 32 -> 6
        assert attn.query.weight.shape == (192, 384) and attn.value.bias.shape == (192,)
        assert out.weight.shape == (384, 192)
    report = result.reports[0]
    assert all(len(h) == 6 for h in report.details["heads_kept"].values())
    assert report.params_before - report.params_after == 6 * 4 * 384 * 192 + 6 * 3 * 192
    assert report.flops_after < report.flops_before
    assert 0.5 < report.metric_after["cosine_to_teacher"] < 0.999  # changed, still an embedder

    loaded = resolve_model(str(result.out))
    feeds = {k: torch.from_numpy(v) for k, v in minilm.fresh_inputs(3).items()}
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(**feeds), result.module(**feeds), rtol=0, atol=0)
    exported = modelport.export(str(result.out), ["onnxruntime:cpu:fp32"], out=tmp_path / "b",
                                bench=None, progress=False)
    row = next(r for r in exported.rows if r["target"] == "onnxruntime:cpu:fp32")
    assert row["status"] == "ok" and row["fidelity"]["cosine_min"] > 0.9999


# -- unstructured pruning ------------------------------------------------------------------------
def test_unstructured_pruning_zeroes_weights_keeps_shapes_and_says_so(digits, digits_data):
    from modelport.passes.contract import run_pass
    from modelport.passes.prune_unstructured import MagnitudePrune

    ctx = _ctx(digits, digits_data)
    student = copy.deepcopy(digits.module)
    shapes = {k: v.shape for k, v in student.state_dict().items()}
    student, report = run_pass(MagnitudePrune(amount=0.6), student, ctx)
    assert {k: v.shape for k, v in student.state_dict().items()} == shapes  # no masks left
    assert report.sparsity_after == pytest.approx(0.6, abs=0.01)
    assert report.params_after == report.params_before
    assert report.flops_after == report.flops_before  # dense FLOPs: nothing bought there
    assert report.gzip_bytes_after < 0.7 * report.gzip_bytes_before
    assert any("no speedup" in n for n in report.notes)


def test_iterative_pruning_reaches_the_target_sparsity(digits, digits_data):
    from modelport.passes.contract import run_pass
    from modelport.passes.prune_unstructured import MagnitudePrune

    ctx = _ctx(digits, digits_data, batch_size=64)
    _student, report = run_pass(MagnitudePrune(amount=0.8, steps=2, finetune_epochs=1,
                                              max_steps=3), copy.deepcopy(digits.module), ctx)
    assert report.sparsity_after == pytest.approx(0.8, abs=0.01)
    assert len(report.details["finetune"]) == 2


# -- low-rank -----------------------------------------------------------------------------------
def test_low_rank_at_full_rank_reproduces_linear_and_conv_layers():
    import torch
    from torch import nn

    from modelport.passes.lowrank import factorize

    torch.manual_seed(0)
    for layer, x in ((nn.Linear(64, 48), torch.randn(5, 64)),
                     (nn.Conv2d(16, 32, 3, padding=1, stride=2), torch.randn(2, 16, 9, 9))):
        w = layer.weight.detach().reshape(layer.weight.shape[0], -1).double()
        svd = torch.linalg.svd(w, full_matrices=False)
        full = factorize(layer, svd, min(w.shape))
        torch.testing.assert_close(full(x), layer(x), atol=1e-5, rtol=1e-5)
        half = factorize(layer, svd, min(w.shape) // 4)
        assert (half(x) - layer(x)).abs().max() > 1e-3  # truncation is not a no-op


def test_low_rank_pass_cuts_flops_and_skips_layers_where_it_would_not(digits, digits_data):
    from modelport.passes.contract import run_pass
    from modelport.passes.lowrank import LowRank

    ctx = _ctx(digits, digits_data)
    _student, report = run_pass(LowRank(energy=0.8), copy.deepcopy(digits.module), ctx)
    assert set(report.details["ranks"]) == {"features.3", "features.7"}  # 1->16 conv: too small
    assert report.flops_after < report.flops_before and report.params_after < report.params_before
    _, full = run_pass(LowRank(energy=None, rank=10_000), copy.deepcopy(digits.module), ctx)
    assert full.details["ranks"] == {} and len(full.details["skipped"]) == 2  # saves nothing
    assert full.metric_after["accuracy"] == full.metric_before["accuracy"]


# -- layer drop + distillation ----------------------------------------------------------------
def test_layer_drop_keeps_every_other_teacher_layer(minilm):
    import torch

    from modelport.passes.contract import PassContext
    from modelport.passes.layer_drop import LayerDrop

    student = LayerDrop().apply(copy.deepcopy(minilm.module), PassContext(task="embedding"))
    layers = student.encoder.encoder.layer
    assert len(layers) == 3 and student.encoder.config.num_hidden_layers == 3
    for i, kept in enumerate((0, 2, 4)):
        src = minilm.module.encoder.encoder.layer[kept].attention.self.query.weight
        assert torch.equal(layers[i].attention.self.query.weight, src)


def test_greedy_layer_drop_keeps_the_blocks_the_teacher_misses_least(minilm, minilm_data,
                                                                     minilm_teacher_eval):
    """keep: greedy scores candidates on the calibration split only; on MiniLM it must beat
    every-other-block on the eval split it never saw (0.75 vs 0.39 mean cosine here)."""
    from modelport.passes.contract import PassContext
    from modelport.passes.layer_drop import LayerDrop

    calib, evalset = minilm_data
    ctx = PassContext(task="embedding", calib=calib, eval=evalset,
                      teacher=copy.deepcopy(minilm.module).eval(), progress=False,
                      _teacher_eval=_known(minilm_teacher_eval))
    greedy = LayerDrop(keep="greedy", greedy_samples=64)
    student = greedy.apply(copy.deepcopy(minilm.module), ctx)
    keep = greedy.details["keep"]
    assert len(keep) == 3 and keep == sorted(keep) and 5 in keep
    scores = [t["cosine_to_teacher"] for t in greedy.details["greedy"]]
    assert scores == sorted(scores, reverse=True)  # each removal costs more agreement
    assert sorted(keep + [t["dropped"] for t in greedy.details["greedy"]]) == list(range(6))
    assert student._modelport_kept_blocks == keep
    every_other = LayerDrop().apply(copy.deepcopy(minilm.module), ctx)
    assert ctx.evaluate(student)["cosine_to_teacher"] > \
        ctx.evaluate(every_other)["cosine_to_teacher"] + 0.2
    with pytest.raises(UsageError, match="'greedy'"):
        LayerDrop(keep="best").apply(copy.deepcopy(minilm.module), ctx)


def test_augmented_texts_are_seeded_new_and_made_of_the_originals():
    from modelport.passes.text_augment import augment_texts

    texts = ["the cat sat on the warm mat today", "rain fell over the quiet harbour all night",
             "she packed two apples for the long walk"]
    a = augment_texts(texts, 50, seed=1)
    assert a == augment_texts(texts, 50, seed=1) and a != augment_texts(texts, 50, seed=2)
    assert len(a) == 50 and len(set(a)) > 25
    vocab = {w for t in texts for w in t.split()}
    assert all(set(t.split()) <= vocab for t in a)
    assert augment_texts([], 5) == [] and augment_texts(texts, 0) == []


def test_similarity_spearman_equals_scipy_and_ignores_scale():
    from scipy.stats import spearmanr

    from modelport.metrics import similarity_spearman

    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(40, 16))
    student = teacher + 0.5 * rng.normal(size=(40, 16))
    iu = np.triu_indices(40, k=1)

    def sims(x):
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return (x @ x.T)[iu]

    want = spearmanr(sims(student), sims(teacher)).statistic
    assert similarity_spearman(student, teacher) == pytest.approx(want, abs=1e-9)
    assert similarity_spearman(3.0 * teacher, teacher) == pytest.approx(1.0)
    assert 0.3 < want < 0.99


def test_distill_with_augmented_text_and_hidden_states_trains_on_more_rows(minilm, minilm_data,
                                                                           minilm_teacher_eval):
    from modelport.passes.compress_steps import text_encoder
    from modelport.passes.contract import PassContext, TrainSettings, run_pass
    from modelport.passes.distill import Distill
    from modelport.passes.layer_drop import LayerDrop

    calib, evalset = minilm_data
    ctx = PassContext(task="embedding", calib=calib, eval=evalset,
                      teacher=copy.deepcopy(minilm.module).eval(), progress=False,
                      train=TrainSettings(epochs=1, lr=2e-4, patience=None, max_steps=6),
                      tokenize=text_encoder(minilm), _teacher_eval=_known(minilm_teacher_eval))
    student = LayerDrop(keep=[0, 4, 5]).apply(copy.deepcopy(minilm.module), ctx)
    _, report = run_pass(Distill(loss="cosine", augment=200, hidden_weight=1.0), student, ctx)
    assert report.details["augmented_rows"] == 200 and report.details["steps"] == 6
    assert report.metric_after["cosine_to_teacher"] > report.metric_before["cosine_to_teacher"]
    assert "similarity_spearman" in report.metric_after
    with pytest.raises(UsageError, match="augment needs text"):
        Distill(augment=10).apply(student, PassContext(task="embedding", calib=calib,
                                                       teacher=ctx.teacher, progress=False))


def test_distillation_beats_no_distillation_on_the_eval_split(digits, digits_data):
    """Fixed budget, seeded: a pruned student distilled from the teacher must beat the same
    student untouched, and the metric is measured on the eval split it never trained on."""
    from modelport.passes.contract import run_pass
    from modelport.passes.distill import Distill
    from modelport.passes.prune_structured import StructuredPrune

    ctx = _ctx(digits, digits_data, epochs=30, lr=3e-3, batch_size=32, patience=None,
               max_steps=150)
    pruned, _ = run_pass(StructuredPrune(ratio=0.5), copy.deepcopy(digits.module), ctx)
    undistilled = ctx.evaluate(pruned)
    _, report = run_pass(Distill(), pruned, ctx)
    assert report.metric_before == undistilled
    assert report.metric_after["accuracy"] > undistilled["accuracy"] + 0.3
    assert report.metric_after["accuracy"] > 0.9
    assert report.details["steps"] == 150
    # the best epoch is chosen on a validation slice held out of the calibration split
    assert report.details["train_samples"] + report.validation_samples == len(digits_data[0])


def test_minilm_student_distilled_on_calibration_split_gets_closer_to_teacher(
        minilm, minilm_data, minilm_teacher_eval):
    from modelport.passes.contract import run_pass
    from modelport.passes.distill import Distill
    from modelport.passes.layer_drop import LayerDrop

    ctx = _ctx(minilm, minilm_data, teacher_eval=minilm_teacher_eval, epochs=1, lr=1e-4,
               batch_size=32, patience=None, max_steps=8)
    student, drop = run_pass(LayerDrop(), copy.deepcopy(minilm.module), ctx)
    assert drop.flops_after < 0.6 * drop.flops_before
    _, report = run_pass(Distill(loss="cosine"), student, ctx)
    before = report.metric_before["cosine_to_teacher"]
    assert report.metric_after["cosine_to_teacher"] > before + 0.05  # 8 steps: 0.39 -> 0.49 here


# -- recipes, the compressed directory, QAT through export --------------------------------------
def test_recipe_errors_name_the_fix(tmp_path):
    from modelport.passes.recipes import load_recipe

    with pytest.raises(UsageError, match="did you mean 'digits-cnn-slim'"):
        load_recipe("digits-cnn-slm")
    bad = tmp_path / "r.yaml"
    bad.write_text("passes:\n  - prune-structured: {ratoi: 0.5}\n")
    with pytest.raises(UsageError, match="unknown option 'ratoi'; did you mean 'ratio'"):
        load_recipe(bad)
    bad.write_text("passes:\n  - prune-struct: {}\n")
    with pytest.raises(UsageError, match="did you mean 'prune-structured'"):
        load_recipe(bad)
    good = tmp_path / "ok.yaml"
    good.write_text("train: {epochs: 2}\npasses:\n  - low-rank: {energy: 0.5}\n  - distill\n")
    recipe = load_recipe(good)
    assert [p["pass"] for p in recipe["passes"]] == ["low-rank", "distill"]


@pytest.fixture(scope="module")
def qat_dir(tmp_path_factory):
    from modelport.passes import compress

    out = tmp_path_factory.mktemp("compressed") / "digits-qat"
    return compress("builtin:digits-cnn", "digits-cnn-qat", out=out, progress=False,
                    max_steps=20)


def test_compressed_directory_reloads_to_the_same_module(qat_dir):
    import torch

    from modelport.models import resolve_model

    path = qat_dir.out
    assert {p.name for p in path.iterdir()} >= {"compressed.json", "model.safetensors",
                                                 "recipe.yaml", "REPORT.md"}
    assert not list(path.glob("*.pt")) and not list(path.glob("*.pkl"))
    loaded = resolve_model(str(path))
    x = torch.from_numpy(loaded.fresh_inputs(4)["image"])
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(image=x), qat_dir.module(image=x), rtol=0, atol=0)
    assert loaded.metadata["passes"][0]["name"] == "qat"


def test_recipes_chain_through_compressed_directories(tmp_path):
    """compress DIR --recipe R: the child rebuilds from its parent directory and the bundle's
    pass list runs from the teacher through both recipes."""
    import torch

    from modelport.models import resolve_model
    from modelport.passes import compress

    parent = compress("builtin:digits-cnn", "digits-cnn-slim", out=tmp_path / "slim",
                      progress=False, max_steps=5)
    child = compress(str(parent.out), "digits-cnn-qat", out=tmp_path / "slim-qat",
                     progress=False, max_steps=5)
    saved = json.loads((child.out / "compressed.json").read_text())
    assert Path(saved["base"]) == parent.out.resolve()
    loaded = resolve_model(str(child.out))
    assert [p["name"] for p in loaded.metadata["passes"]] == ["prune-structured", "distill", "qat"]
    x = torch.from_numpy(loaded.fresh_inputs(4)["image"])
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(image=x), child.module(image=x), rtol=0, atol=0)


def test_tampered_weights_are_refused(qat_dir, tmp_path):
    import shutil

    from modelport.models import resolve_model

    copy_dir = tmp_path / "c"
    shutil.copytree(qat_dir.out, copy_dir)
    with open(copy_dir / "model.safetensors", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelLoadError, match="sha256"):
        resolve_model(str(copy_dir))


@pytest.mark.onnxruntime
def test_qat_exports_as_qdq_onnx_and_runs_in_ort_within_budget(qat_dir, tmp_path):
    import onnx

    import modelport

    result = modelport.export(str(qat_dir.out), ["onnxruntime:cpu:fp32"], out=tmp_path,
                              bench=None, progress=False)
    bundle = result.bundles["onnxruntime:cpu:fp32"]
    manifest = json.loads((bundle / "manifest.json").read_text())
    graph = onnx.load(str(bundle / manifest["artifact"]["file"])).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") >= 8 and ops.count("DequantizeLinear") >= 8
    assert manifest["accuracy"]["passed"]
    # the accuracy is against the labels, and QAT may not lose more than the budget vs the teacher
    report = manifest["passes"][0]
    assert report["name"] == "qat" and report["details"]["mode"] == "qat"
    assert report["metric_after"]["accuracy"] >= report["metric_before"]["accuracy"] - 0.01
    assert manifest["accuracy"]["metrics"]["accuracy"] >= report["metric_before"]["accuracy"] - 0.01


def test_cli_compress_then_export(tmp_path):
    from tests.conftest import run_cli

    out = tmp_path / "slim"
    r = run_cli("-q", "compress", "builtin:digits-cnn", "--recipe", "digits-cnn-slim",
                "--out", str(out), "--max-steps", "40")
    assert r.returncode == 0, r.stderr
    assert "prune-structured" in r.stdout and "distill" in r.stdout
    saved = json.loads((out / "compressed.json").read_text())
    assert [p["name"] for p in saved["passes"]] == ["prune-structured", "distill"]
    assert saved["passes"][0]["params_after"] < saved["passes"][0]["params_before"] / 3
    r = run_cli("-q", "export", str(out), "--target", "onnxruntime:cpu:fp32", "--out",
                str(tmp_path / "b"), "--no-bench")
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "b" / "onnxruntime-cpu-fp32" / "manifest.json").read_text())
    assert [p["name"] for p in manifest["passes"]] == ["prune-structured", "distill"]
    r = run_cli("-q", "compress", "builtin:digits-cnn", "--recipe", "nope", "--out",
                str(tmp_path / "x"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "built-ins are" in r.stderr
    assert not (tmp_path / "x").exists()
