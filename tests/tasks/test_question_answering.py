"""question-answering from a Hugging Face folder (BERT with token_type_ids, RoBERTa without):
every bundle against transformers (raw start/end logits within 1e-4 on ONNX Runtime and
OpenVINO FP32), `run`'s answer against transformers' QA pipeline method on a context long
enough to need several windows, Session.predict = run, INT8 within its exact-match budget,
and bad input as one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.models.checkpoints import CORPUS
from tests.tasks import folders
from tests.tasks.qa_reference import graph_feeds, model_outputs, pipeline_answer, windows

pytestmark = [pytest.mark.slow, pytest.mark.onnxruntime, pytest.mark.openvino]

FAMILIES = {"bert": folders.bert_qa, "roberta": folders.roberta_qa}
TARGETS = ("onnxruntime:cpu:fp32", "openvino:cpu:fp32", "onnxruntime:cpu:int8",
           "openvino:cpu:int8")
FP32 = TARGETS[:2]
#: --max-accuracy-drop: exact match may lose at most 15 points (measured here on these
#: random-init folders: 0.94-1.00 over 49 and 217 windows; INT8 kernels differ by CPU)
BUDGET_POINTS = 0.15
#: long enough for two or three windows of the test models' 48-50 tokens
CONTEXT = ("john lives in paris and works at acme. the red car runs fast and the dog was slow "
           "and the house is green and the cat sat on the mat. she bought a new phone "
           "yesterday in berlin.")
QUESTIONS = ["who lives in paris?", "what runs fast", "where did she buy a phone?"]


def _pairs() -> list[dict[str, str]]:
    questions = ["who works at acme?", "what is green?", "where is the cat?", "what was slow?",
                 "who bought a phone?", "where does john live?"]
    return [{"question": q, "context": sep.join(CORPUS[i:] + CORPUS[:i])}
            for sep in (" . ", " and ") for i in range(len(CORPUS)) for q in questions]


@pytest.fixture(scope="module")
def qa(tmp_path_factory):
    import modelport
    from modelport.metrics import Budget

    root = tmp_path_factory.mktemp("qa")
    calib = root / "qa.jsonl"
    calib.write_text("\n".join(json.dumps(p) for p in _pairs()) + "\n", encoding="utf-8")
    out = {}
    for name, make in FAMILIES.items():
        folder = make(root / name)
        result = modelport.export(str(folder), list(TARGETS), out=root / f"{name}-bundles",
                                  calib=calib, bench=None, progress=False,
                                  budget=Budget(max_accuracy_drop=BUDGET_POINTS))
        out[name] = (folder, result)
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("target", FP32)
def test_fp32_bundles_match_transformers_start_and_end_logits(qa, family, target):
    import modelport

    folder, result = qa[family]
    session = modelport.load(result.bundles[target])
    params = session.bundle.manifest["preprocessing"]["question_answering"]
    _, enc = windows(folder, QUESTIONS[0], CONTEXT, params)
    assert len(enc["input_ids"]) >= 2  # the context is read in overlapping windows
    feeds = graph_feeds(enc, list(session.inputs))
    ref_start, ref_end = model_outputs(folder, feeds)
    with session:
        got = session.infer({k: v.numpy() for k, v in feeds.items()})
    np.testing.assert_allclose(got["start_logits"], ref_start, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got["end_logits"], ref_end, atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("target", FP32)
def test_run_answers_as_the_transformers_qa_pipeline(qa, family, target, tmp_path):
    import modelport

    folder, result = qa[family]
    bundle = result.bundles[target]
    out = tmp_path / "answer.json"
    args = [a for q in QUESTIONS for a in ("--question", q)]
    proc = run_cli("run", str(bundle), *args, "--context", CONTEXT, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(out.read_text())["predictions"]
    params = modelport.load(bundle).bundle.manifest["preprocessing"]["question_answering"]
    for question, got in zip(QUESTIONS, shown, strict=True):
        ref, _ = pipeline_answer(folder, question, CONTEXT, params)
        assert (got["answer"], got["start"], got["end"]) == (ref["answer"], ref["start"],
                                                             ref["end"]), question
        assert abs(got["score"] - ref["score"]) < 1e-4
        assert repr(ref["answer"]) in proc.stdout
    # Python gets the same answer from the session
    answer = modelport.load(bundle).predict(question=QUESTIONS, context=CONTEXT)
    assert answer.to_dict()["predictions"] == shown


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("target", TARGETS[2:])
def test_int8_keeps_its_exact_match_budget(qa, family, target):
    import modelport

    _, result = qa[family]
    manifest = modelport.load(result.bundles[target]).bundle.manifest
    accuracy = manifest["accuracy"]
    assert accuracy["budget"]["max_accuracy_drop"] == BUDGET_POINTS
    assert accuracy["passed"]
    metrics = accuracy["metrics"]
    assert metrics["exact_match"] >= 1.0 - BUDGET_POINTS
    assert metrics["samples"] >= 30 and "question-answering" == manifest["preprocessing"]["task"]
    answer = modelport.load(result.bundles[target]).predict(question=QUESTIONS[0],
                                                            context=CONTEXT)
    assert answer.spans[0].answer and answer.spans[0].answer in CONTEXT


@pytest.mark.parametrize(("args", "fragment"), [
    (("--question", "who?"), "--question needs --context"),
    (("--context", "john lives in paris"), "--context goes with --question"),
    (("--text", "john lives in paris"), "is not a text model"),
    (("--audio", "x.wav"), "is not an audio model"),
    (("--question", "who?", "--context", "paris", "--labels", "a,b"), "--labels does not apply"),
    (("--question", " ", "--context", "paris"), "--question is empty"),
])
def test_bad_input_is_one_line(qa, args, fragment):
    bundle = qa["bert"][1].bundles["onnxruntime:cpu:fp32"]
    proc = run_cli("run", str(bundle), *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


def test_inspect_shows_the_qa_inputs_and_outputs(qa):
    proc = run_cli("inspect", str(qa["roberta"][0]))
    assert proc.returncode == 0, proc.stderr
    assert "question-answering (from architectures: RobertaForQuestionAnswering)" in proc.stdout
    assert "start_logits float32[batch, seq], end_logits float32[batch, seq]" in proc.stdout
    assert "token_type_ids" not in proc.stdout


def test_run_needs_no_torch_transformers_or_pillow(qa):
    """What a device runs: the answer comes from numpy, tokenizers and the runtime alone."""
    import subprocess
    import sys

    bundle = str(qa["roberta"][1].bundles["onnxruntime:cpu:int8"])
    args = ["run", bundle, "--question", QUESTIONS[0], "--context", CONTEXT]
    code = ("import sys; sys.modules.update(torch=None, transformers=None, PIL=None); "
            "from modelport.cli import main; sys.exit(main(sys.argv[1:]))")
    device = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                            text=True, timeout=300, check=False)
    assert device.returncode == 0, device.stderr[-2000:]
    assert device.stdout == run_cli(*args).stdout


def test_int8_without_calibration_data_is_refused_naming_calib(qa, tmp_path):
    import modelport
    from modelport.errors import CalibrationDataError

    with pytest.raises(CalibrationDataError, match=r"pass --calib .*JSONL of \{\"question\""):
        modelport.export(str(qa["bert"][0]), ["onnxruntime:cpu:int8"], out=tmp_path / "b",
                         bench=None, progress=False)
