"""Session-scoped LM artifacts: each checkpoint is exported once, without benchmarking."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lm.checkpoints import write_checkpoint
from tests.support.shared import once_per_run

EVAL_LINES = 40  # perplexity lines (the issue allows <= 50)
FP32_TARGETS = ["onnxruntime:cpu:fp32", "openvino:cpu:fp32"]
WEIGHT_ONLY_TARGETS = ["onnxruntime:cpu:int4", "onnxruntime:cpu:int8wo",
                       "openvino:cpu:int4", "openvino:cpu:int8wo"]
#: weight + activation INT8 (ORT dynamic, NNCF static with prefill calibration feeds)
INT8_TARGETS = ["onnxruntime:cpu:int8", "openvino:cpu:int8"]


@pytest.fixture(scope="session")
def eval_text(tmp_path_factory) -> Path:
    """The last lines of the shipped sentences (the default eval split is ~330 lines)."""
    from modelport.models.data import sentences

    path = tmp_path_factory.mktemp("lm-eval") / "eval.txt"
    path.write_text("\n".join(sentences()[-EVAL_LINES:]), encoding="utf-8")
    return path


def _export(kind: str, tmp_path_factory, eval_text: Path, targets: list[str], **kwargs):
    """(checkpoint folder or builtin name, ExportResult, the budget error or None)."""
    import modelport
    from modelport.errors import AccuracyBudgetExceeded

    def build():
        root = tmp_path_factory.mktemp(f"lm-{kind}")
        model = write_checkpoint(kind, root / "ckpt") if kind != "tiny-lm" else "builtin:tiny-lm"
        try:
            result = modelport.export(str(model), targets, out=root / "bundles", bench=None,
                                      eval=eval_text, progress=False, **kwargs)
        except AccuracyBudgetExceeded as exc:  # the other targets' bundles are still written
            return model, exc.result, exc
        return model, result, None

    # several files use each export: built once per run, not once per xdist worker
    return once_per_run(tmp_path_factory, f"lm-{kind}", build)


@pytest.fixture(scope="session")
def gpt2_export(tmp_path_factory, eval_text):
    """FP32 bundles, and an ORT INT4 build held to a 0.1% perplexity budget it must miss
    (GPT-2's Conv1D layers export as Gemm: this also checks that those get packed)."""
    from modelport.metrics import Budget

    return _export("gpt2", tmp_path_factory, eval_text,
                   [*FP32_TARGETS, "onnxruntime:cpu:int4"],
                   budget=Budget(max_perplexity_increase=0.001))


@pytest.fixture(scope="session")
def qwen2_export(tmp_path_factory, eval_text):
    return _export("qwen2", tmp_path_factory, eval_text, FP32_TARGETS)


@pytest.fixture(scope="session")
def falcon_export(tmp_path_factory, eval_text):
    return _export("falcon", tmp_path_factory, eval_text, FP32_TARGETS)


@pytest.fixture(scope="session")
def tiny_lm_export(tmp_path_factory, eval_text):
    return _export("tiny-lm", tmp_path_factory, eval_text,
                   FP32_TARGETS + WEIGHT_ONLY_TARGETS + INT8_TARGETS)
