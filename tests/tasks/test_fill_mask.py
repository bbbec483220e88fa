"""fill-mask from a Hugging Face folder (DistilBERT with [MASK], RoBERTa with <mask>): every
bundle against transformers (raw logits within 1e-4 on ONNX Runtime and OpenVINO FP32), `run`'s
top-k tokens against transformers' fill-mask pipeline, Session.predict = run, INT8 within its
masked top-1 agreement budget, and bad input as one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.models.checkpoints import CORPUS, TEXTS
from tests.tasks import folders

pytestmark = [pytest.mark.slow, pytest.mark.onnxruntime, pytest.mark.openvino]

FAMILIES = {"distilbert": (folders.distilbert_mlm, "[MASK]"),
            "roberta": (folders.roberta_mlm, "<mask>")}
TARGETS = ("onnxruntime:cpu:fp32", "openvino:cpu:fp32", "onnxruntime:cpu:int8",
           "openvino:cpu:int8")
FP32 = TARGETS[:2]
BUDGET_POINTS = 0.10  # --max-accuracy-drop: masked top-1 agreement may lose at most 10 points
TOP_K = 4


def _texts(mask: str) -> list[str]:
    return [f"the {mask} sat on the mat", f"john lives in {mask} and works at acme"]


@pytest.fixture(scope="module")
def fill(tmp_path_factory):
    import modelport
    from modelport.metrics import Budget

    root = tmp_path_factory.mktemp("fill-mask")
    calib = root / "lines.txt"  # no mask in them: modelport masks 15% of each line's tokens
    lines = [f"{a} and {b}" for a in CORPUS + TEXTS for b in CORPUS]
    calib.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = {}
    for name, (make, _) in FAMILIES.items():
        folder = make(root / name)
        result = modelport.export(str(folder), list(TARGETS), out=root / f"{name}-bundles",
                                  calib=calib, bench=None, progress=False,
                                  budget=Budget(max_accuracy_drop=BUDGET_POINTS))
        out[name] = (folder, result)
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("target", FP32)
def test_fp32_bundles_match_transformers_logits(fill, family, target):
    import torch
    import transformers

    import modelport

    folder, result = fill[family]
    texts = _texts(FAMILIES[family][1])
    tok = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = transformers.AutoModelForMaskedLM.from_pretrained(str(folder),
                                                              local_files_only=True).eval()
    feeds = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = model(**feeds).logits.numpy()
    session = modelport.load(result.bundles[target])
    with session:
        got = session.infer({k: feeds[k].numpy() for k in session.inputs})["logits"]
    keep = feeds["attention_mask"].numpy().astype(bool)
    np.testing.assert_allclose(got[keep], ref[keep], atol=1e-4, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("target", FP32)
def test_run_prints_the_fill_mask_pipelines_tokens(fill, family, target, tmp_path):
    import transformers

    import modelport

    folder, result = fill[family]
    bundle = result.bundles[target]
    texts = _texts(FAMILIES[family][1])
    out = tmp_path / "fill.json"
    proc = run_cli("run", str(bundle), *[a for t in texts for a in ("--text", t)],
                   "--top-k", str(TOP_K), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(out.read_text())["predictions"]
    pipe = transformers.pipeline("fill-mask", model=str(folder), tokenizer=str(folder),
                                 top_k=TOP_K)
    for text, row in zip(texts, shown, strict=True):
        ref = pipe(text)
        (candidates,) = row["masks"]
        assert [c["token"] for c in candidates] == [r["token"] for r in ref], text
        for got, want in zip(candidates, ref, strict=True):
            assert abs(got["score"] - want["score"]) < 1e-4
            assert got["token_str"] == want["token_str"]
            assert got["sequence"] == want["sequence"]
            assert want["sequence"] in proc.stdout
    answer = modelport.load(bundle).predict(text=texts, top_k=TOP_K)
    assert answer.to_dict()["predictions"] == shown


def test_several_masks_in_one_text_each_get_their_tokens(fill):
    import modelport

    bundle = fill["roberta"][1].bundles["onnxruntime:cpu:fp32"]
    answer = modelport.load(bundle).predict(text="john <mask> in <mask>", top_k=2)
    (positions,) = answer.masks
    assert len(positions) == 2 and all(len(c) == 2 for c in positions)
    assert "mask 2:" in str(answer)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("target", TARGETS[2:])
def test_int8_keeps_its_masked_top1_budget(fill, family, target):
    import modelport

    _, result = fill[family]
    manifest = modelport.load(result.bundles[target]).bundle.manifest
    accuracy = manifest["accuracy"]
    assert accuracy["budget"]["max_accuracy_drop"] == BUDGET_POINTS and accuracy["passed"]
    metrics = accuracy["metrics"]
    assert metrics["masked_top1_agreement"] >= 1.0 - BUDGET_POINTS
    assert metrics["masked_positions"] >= 20
    assert manifest["preprocessing"]["mask_token"] == FAMILIES[family][1]


@pytest.mark.parametrize(("args", "fragment"), [
    (("--text", "the cat sat on the mat"), "put this model's own mask token '[MASK]'"),
    (("--image", "x.png"), "is not an image model"),
    (("--question", "who?", "--context", "paris"), "is not a question-answering model"),
    (("--text", "the [MASK] sat", "--threshold", "0.5"), "--threshold does not apply"),
])
def test_bad_input_is_one_line(fill, args, fragment):
    bundle = fill["distilbert"][1].bundles["onnxruntime:cpu:fp32"]
    proc = run_cli("run", str(bundle), *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


def test_run_needs_no_torch_transformers_or_pillow(fill):
    """What a device runs: the tokens come from numpy, tokenizers and the runtime alone."""
    import subprocess
    import sys

    bundle = str(fill["roberta"][1].bundles["openvino:cpu:int8"])
    args = ["run", bundle, "--text", "the <mask> sat on the mat"]
    code = ("import sys; sys.modules.update(torch=None, transformers=None, PIL=None); "
            "from modelport.cli import main; sys.exit(main(sys.argv[1:]))")
    device = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                            text=True, timeout=300, check=False)
    assert device.returncode == 0, device.stderr[-2000:]
    assert device.stdout == run_cli(*args).stdout
