"""Which TFLite INT8 form to build, per graph kind, and the quick fidelity trial that picks it.

Full-integer INT8 collapses attention graphs (MiniLM cosine 0.31, ../shared/FINDINGS.md):
activation x activation MatMuls and softmax/layer-norm ranges do not fit int8 per-tensor
scales. For those graphs the modes are tried in order of expected fidelity and then speed as
measured on x86: dynamic-range (int8 weights, run-time activation quantization: as faithful as
FP32 there and 1.2x faster than TFLite FP32 on an AVX2 EPYC), then 16x8 (int16 activations:
faithful, but its kernels are reference ones, slower), then full-integer. The first within the
accuracy budget wins; when none is, the most faithful is kept and the pipeline refuses it with
the numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modelport.backends.onnx_qdq import activation_matmuls
from modelport.backends.tflite.options import TFLiteOptions

ATTENTION_ORDER = ("dynamic-range", "16x8", "full-integer")
#: feeds the trial runs: enough to tell 0.31 from 0.99, cheap next to a conversion
TRIAL_FEEDS = 8


def candidate_modes(onnx_path: Path, options: TFLiteOptions) -> tuple[list[str], str]:
    """(modes to try in order, why): the forced one, or the graph kind's order."""
    if options.int8_mode:
        return [options.int8_mode], "--tflite-int8-mode"
    if activation_matmuls(onnx_path):
        return list(ATTENTION_ORDER), ("attention graph (MatMul of two activations): first "
                                       "within the budget of " + ", ".join(ATTENTION_ORDER))
    return ["full-integer"], "no attention in the graph: full-integer"


def trial_cosine(path: Path, specs, out_specs, feeds: list[dict[str, np.ndarray]],
                 references: list[list[np.ndarray]]) -> float:
    """Mean row cosine of the first output vs ONNX Runtime over ``feeds`` (static shapes)."""
    from modelport.backends.tflite.session import TFLiteSession

    cosines = []
    with TFLiteSession(path, specs, out_specs, threads=None) as session:
        for feed, ref in zip(feeds, references, strict=True):
            got = next(iter(session.infer(feed).values()))
            a = got.reshape(got.shape[0], -1).astype(np.float64)
            b = ref[0].reshape(ref[0].shape[0], -1).astype(np.float64)
            num = (a * b).sum(1)
            den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12
            cosines += list(num / den)
    return float(np.mean(cosines))
