"""Session-scoped encoder-decoder bundles: each tiny family exported once, without timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.seq2seq.checkpoints import write_checkpoint

FP32 = ["onnxruntime:cpu:fp32", "openvino:cpu:fp32"]
#: one batch of the export's generation checks (seq2seq_steps.BATCH): keeps the fixtures short
EVAL = ["the cat sat on the mat", "a dog runs quickly over the old road",
        "water fire stone book", "happy sun and sad moon"]


@pytest.fixture(scope="session")
def seq2seq_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seq2seq")
    (root / "eval.txt").write_text("\n".join(EVAL), encoding="utf-8")
    return root


def export_family(root: Path, family: str, targets: list[str], **kwargs):
    """(checkpoint folder, bundles directory, the export's result rows)."""
    import modelport
    from modelport.errors import AccuracyBudgetExceeded

    folder = write_checkpoint(family, root / family, **kwargs)
    out = root / f"{family}-bundles"
    try:
        result = modelport.export(str(folder), targets, out=out, bench=None,
                                  eval=root / "eval.txt", progress=False)
    except AccuracyBudgetExceeded as exc:  # the other targets' bundles are still written
        result = exc.result
    return folder, out, result.rows


@pytest.fixture(scope="session")
def t5_bundles(seq2seq_root):
    return export_family(seq2seq_root, "t5", FP32,
                         task_prefix="translate English to German: ")


@pytest.fixture(scope="session")
def bart_bundles(seq2seq_root):
    return export_family(seq2seq_root, "bart", FP32)


@pytest.fixture(scope="session")
def marian_bundles(seq2seq_root):
    return export_family(seq2seq_root, "marian",
                         [*FP32, "onnxruntime:cpu:int8wo", "openvino:cpu:int4",
                          "onnxruntime:cpu:int8", "openvino:cpu:int8"])


@pytest.fixture(scope="session")
def pegasus_bundles(seq2seq_root):
    return export_family(seq2seq_root, "pegasus", FP32)
