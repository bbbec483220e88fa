"""question-answering on TFLite: the BERT QA folder converts (onnx2tf), and `run` on the TFLite
FP32 bundle gives transformers' QA pipeline answer (a masked-LM head may not convert: onnx2tf's
output then differs from ONNX Runtime and the export refuses it with that reason)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.tasks import folders
from tests.tasks.qa_reference import pipeline_answer
from tests.tasks.test_question_answering import CONTEXT, QUESTIONS

pytestmark = [pytest.mark.slow, pytest.mark.tflite]


def test_tflite_fp32_bundle_answers_as_the_pipeline(tmp_path):
    import modelport

    folder = folders.bert_qa(tmp_path / "bert-qa")
    result = modelport.export(str(folder), ["tflite:cpu:fp32"], out=tmp_path / "bundles",
                              bench=None, progress=False)
    bundle = result.bundles["tflite:cpu:fp32"]
    out = tmp_path / "answer.json"
    proc = run_cli("run", str(bundle), "--question", QUESTIONS[0], "--question", QUESTIONS[1],
                   "--context", CONTEXT, "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    params = modelport.load(bundle).bundle.manifest["preprocessing"]["question_answering"]
    for question, got in zip(QUESTIONS, json.loads(out.read_text())["predictions"], strict=False):
        ref, windows = pipeline_answer(folder, question, CONTEXT, params)
        assert windows >= 2
        assert (got["answer"], got["start"], got["end"]) == (ref["answer"], ref["start"],
                                                             ref["end"])
        assert abs(got["score"] - ref["score"]) < 1e-4
