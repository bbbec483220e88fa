"""compress --goal: the search end to end on a tiny random-init BERT classifier folder (a few
training steps), the report, the data split, and --max-time / Ctrl-C leaving a complete folder."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from tests.models.checkpoints import WORDS, wordpiece_tokenizer

TARGET = "onnxruntime:cpu:int8"
FP32 = "onnxruntime:cpu:fp32"  # no INT8 build: the stop tests are about stopping

def _tiny_bert(path):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tok, vocab = wordpiece_tokenizer(["input_ids", "token_type_ids", "attention_mask"])
    labels = ["neg", "pos", "other"]
    config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                        id2label=dict(enumerate(labels)),
                        label2id={n: i for i, n in enumerate(labels)})
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0, 1.0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _sentences(path, n=90):
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n)]
    path.write_text("\n".join(dict.fromkeys(lines)) + "\n", "utf-8")
    return path


def _settings(**kw):
    from modelport.passes.goal_measure import Timing
    from modelport.passes.goal_search import SearchSettings

    return SearchSettings(epochs=1, max_steps=2, batch_size=16, qat_epochs=1,
                          timing=Timing(duration=0.05, warmup=1, min_iters=3), **kw)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("goal")
    return _tiny_bert(root / "bert"), _sentences(root / "calib.txt")


@pytest.fixture(scope="module")
def searched(tiny, tmp_path_factory):
    """An unreachable keep (1.01 of top-1 agreement) so the search walks until its budget."""
    from modelport.passes.goal_search import search

    model, calib = tiny
    out = tmp_path_factory.mktemp("goal-out") / "student"
    seen = []

    def look(cand):  # the candidate's folder exists while the search runs
        from safetensors.numpy import load_file

        weights = load_file(str(Path(cand["dir"]) / "model.safetensors"))
        seen.append({k.replace(".inner.", "."): v.shape for k, v in weights.items()})

    report = search(str(model), speed=1.0, keep=1.01, target=TARGET, out=out,
                    calib=str(calib), settings=_settings(max_candidates=3), progress=False,
                    on_candidate=look)
    return out, report, seen


def _complete(out):
    """The folder is a loadable compressed model with its search report and plot."""
    from modelport.models import resolve_model

    manifest = json.loads((out / "compressed.json").read_text())
    search = json.loads((out / "search.json").read_text())
    assert manifest["search"] == search
    assert (out / "pareto.png").stat().st_size > 0 and (out / "REPORT.md").is_file()
    prepared = resolve_model(str(out))
    assert prepared.metadata["compression"]["search"]["best"] == search["best"]
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))
    return search


def test_search_shrinks_tensors_and_reports_every_candidate(searched):
    out, report, seen = searched
    search = _complete(out)
    assert search["best"] == report["best"] and search["stopped"] == report["stopped"]
    cands = search["candidates"]
    assert len(cands) == 3 and len(seen) == 3
    assert search["stopped"].startswith("candidate budget") and not search["met"]
    teacher = cands[0]
    assert teacher["stage"] == "teacher" and teacher["shape"] is None
    students = cands[1:]
    assert {c["stage"] for c in students} <= {"ptq", "qat"}
    for c in cands:
        for key in ("params", "flops", "latency_ms", "speed", "metric", "keep", "on_front"):
            assert c[key] is not None, key
        assert c["speed"] == pytest.approx(c["teacher_ms"] / c["latency_ms"])
    # the first student is the gentlest shape predicted to be fast enough: smaller tensors
    assert all(c["params"] < teacher["params"] and c["flops"] < teacher["flops"]
               for c in students)
    assert any(c["on_front"] for c in cands)
    best = cands[search["best"]]
    assert search["best_vs_goal"]["speed_short_by"] == pytest.approx(max(0.0, 1.0 - best["speed"]))
    assert search["goal"]["metric"] == "top1_agreement"  # no labels: agreement with the teacher


def test_students_tensors_shrank(searched):
    """Structured pruning and layer drop make the tensors smaller, not just sparser."""
    _, report, seen = searched
    teacher, students = seen[0], seen[1:]
    for shapes, cand in zip(students, report["candidates"][1:], strict=True):
        blocks = {k.split(".layer.")[1].split(".")[0] for k in shapes if ".layer." in k}
        assert len(blocks) == cand["shape"]["layers"], (cand["shape"], cand["passes"], sorted(shapes))
        shrunk = [k for k in shapes if k in teacher and shapes[k] != teacher[k]]
        assert shrunk or len(blocks) < 2, (cand["shape"], cand["passes"])
        assert sum(np.prod(v) for v in shapes.values() if len(v) > 0) \
            < sum(np.prod(v) for v in teacher.values() if len(v) > 0)


def test_validation_slice_never_overlaps_the_evaluation_split(searched):
    _, report, _ = searched
    data = report["data"]
    assert data["validation_overlaps_evaluation"] == 0
    assert data["validation_sha256"] != data["evaluation_sha256"]
    assert data["validation_samples"] > 0 and data["evaluation_samples"] > 0
    assert report["goal"]["metric_on"] == "validation slice of the calibration data"


def test_ctrl_c_writes_the_best_so_far_as_a_complete_folder(tiny, tmp_path):
    from modelport.passes.goal_search import search

    model, calib = tiny
    out = tmp_path / "interrupted"

    def interrupt(cand):
        if cand["id"] == 0:  # right after the teacher's own measurement
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search(str(model), speed=1.0, keep=1.01, target=FP32, out=out, calib=str(calib),
               settings=_settings(), progress=False, on_candidate=interrupt)
    search_report = _complete(out)
    assert search_report["stopped"] == "interrupted (Ctrl-C)"
    assert len(search_report["candidates"]) == 1


def test_max_time_stops_and_writes_the_best_so_far(tiny, tmp_path, capsys):
    """Through the CLI: --max-time parsed by the shared duration parser, the summary printed."""
    from modelport.cli import main

    model, calib = tiny
    out = tmp_path / "timed"
    assert main(["compress", str(model), "--calib", str(calib), "--goal", "speed=1x",
                 "--keep", "1.01", "--target", FP32, "--out", str(out), "--max-time", "0.001",
                 "--max-steps", "2", "--json", str(tmp_path / "search.json")]) == 0
    printed = capsys.readouterr().out
    assert "--max-time reached" in printed and f"--target {FP32}" in printed
    report = _complete(out)
    assert report["stopped"] == "--max-time reached"
    assert len(report["candidates"]) == 1  # the teacher's own measurement, then time was up
    assert json.loads((tmp_path / "search.json").read_text())["best"] == report["best"]


def test_goal_flag_errors_are_one_line(tiny, tmp_path, capsys):
    from modelport.cli import main

    model, _ = tiny
    out = tmp_path / "x"
    assert main(["compress", str(model), "--goal", "fast", "--target", TARGET,
                 "--out", str(out)]) == 2
    assert "speed=Nx" in capsys.readouterr().err
    assert main(["compress", str(model), "--goal", "speed=5x", "--out", str(out)]) == 2
    assert "--target" in capsys.readouterr().err
    assert main(["compress", str(model), "--out", str(out)]) == 2
    assert "--recipe" in capsys.readouterr().err
    assert not out.exists()


def test_attention_map_is_a_distribution_over_real_tokens():
    import torch

    from modelport.passes.distill import attention_map

    torch.manual_seed(0)
    q, k = torch.randn(2, 5, 8), torch.randn(2, 5, 8)  # 2 heads of 4
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    p = attention_map(q, k, 4, mask)
    assert p.shape == (2, 5, 5)
    assert torch.allclose(p.sum(-1), torch.ones(2, 5))
    assert float(p[0, :, 3:].abs().max()) == 0.0  # padding keys get no weight
    heads = (q.view(2, 5, 2, 4).transpose(1, 2) @ k.view(2, 5, 2, 4).transpose(1, 2)
             .transpose(-1, -2) / 2.0).softmax(-1).mean(1)
    assert torch.allclose(p[1], heads[1], atol=1e-6)  # no padding: plain softmax, head mean
