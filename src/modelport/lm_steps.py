"""The language-model steps of an export: KV-cache reference, perplexity check, token bench.

export_steps dispatches here when ``model.task == "text-generation"``; these functions take
what they need as arguments and never import the orchestrator back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.backends.base import Session
from modelport.backends.lm_session import LMSession, prefill_feeds
from modelport.metrics_lm import perplexity

log = logging.getLogger("modelport")

TASK = "text-generation"
#: runtimes that run the KV-cache graph and the generation loop
LM_RUNTIMES = ("onnxruntime", "openvino", "torch")
REFUSED = {
    "tflite": "TFLite takes static shapes; a KV cache that grows by one token per step needs "
              "a stateful or fixed-window graph that modelport does not make yet",
    "tensorrt": "the TensorRT path builds engines for fixed-I/O graphs; KV-cache engines "
                "(TensorRT-LLM) are not wired into modelport yet",
}


@dataclass
class LMReference:
    """What every LM target is compared with: torch FP32 perplexity on the eval lines."""

    sequences: list[np.ndarray]
    reference: dict[str, Any]
    vocab: int
    eos: list[int]
    context_length: int
    #: a decode-style feed (past of 3 tokens) stored in bundles for `verify`
    pool: dict[str, np.ndarray] = field(default_factory=dict)
    #: the last checked target's own outputs on the pool, stored in its bundle: verify then
    #: checks that the bundle still computes what it computed when it was built
    last_pool_outputs: dict[str, np.ndarray] = field(default_factory=dict)

    def reference_metrics(self) -> dict[str, Any]:
        ppl = self.reference["perplexity"]
        return {"perplexity": ppl, "reference_perplexity": ppl, "perplexity_increase": 0.0,
                "tokens": self.reference["tokens"], "sequences": self.reference["sequences"]}


def is_lm(model: Any) -> bool:
    return getattr(model, "task", None) == TASK


def lm_refusal(target: Any) -> str | None:
    """Why a runtime cannot run a KV-cache LM (None: it can)."""
    why = REFUSED.get(target.runtime)
    return None if why is None else (f"not supported on {target.runtime}: {why}; use "
                                     "onnxruntime:cpu:* or openvino:cpu:*")


def check_lm_targets(targets: list[Any]) -> None:
    """Refuse, before any work, runtimes that cannot run a KV-cache LM (one line with why)."""
    from modelport.target_scope import refuse

    refuse(targets, lm_refusal, "language-model targets are")


def bench_lm_targets(model: Any, spec: Any, wanted: list[Any]
                     ) -> tuple[list[Any], list[dict[str, Any]]]:
    """``bench MODEL``: for a language model or an encoder-decoder, ``--targets all`` or a
    device (``cpu``) keeps the targets that apply and reports the others as skipped; targets
    named one by one are kept (the export refuses an inapplicable one with the reason)."""
    from modelport.seq2seq_steps import REFERENCE, is_seq2seq, seq2seq_refusal
    from modelport.target_scope import split

    names = [spec] if isinstance(spec, str) else list(spec)
    tokens = [x.strip() for name in names for x in str(name).split(",") if x.strip()]
    if all(":" in token for token in tokens):
        return wanted, []
    if is_lm(model):
        return split(wanted, lm_refusal, "language models")
    if is_seq2seq(model):  # torch:cpu:fp32: not a target, the reference row the export adds
        kept, skipped = split(wanted, seq2seq_refusal, "encoder-decoder models")
        return kept, [r for r in skipped if r["target"] != REFERENCE]
    from modelport.whisper_steps import is_whisper, whisper_refusal

    if is_whisper(model):  # the same, with Whisper's targets
        kept, skipped = split(wanted, whisper_refusal, "Whisper models")
        return kept, [r for r in skipped if r["target"] != REFERENCE]
    return wanted, []


def plan_export_data(model: Any, targets: list[Any], calib: Any, evalset: Any) -> tuple[Any, Any]:
    """Calibration and evaluation sets: lines of text for language models (each one sequence),
    feed dicts otherwise (calibration_data.plan)."""
    if not is_lm(model):
        from modelport.calibration_data.plan import plan_data
        from modelport.specs import Precision

        needs_calib = any(t.precision == Precision.INT8 for t in targets)
        return plan_data(model, calib, evalset, needs_calib)
    from modelport.calibration_data.lm_text import plan_lm_data

    check_lm_targets(targets)
    return plan_lm_data(model.tokenizer_json, model.default_data, calib, evalset,
                        max_tokens=model.max_length)


def as_lm(session: Session, lm: LMReference) -> LMSession:
    if isinstance(session, LMSession):
        return session
    return LMSession(session, eos_token_id=lm.eos, context_length=lm.context_length)


def lm_reference(model: Any, evalset: Any, workdir: Path, *, opset: int | None
                 ) -> tuple[Any, LMReference]:
    """Export the KV-cache graph, check it against torch, and measure torch's perplexity."""
    from modelport.backends.torch.backend import TorchSession
    from modelport.exporters.kv_cache import export_kv_onnx, validate_kv

    log.info("exporting %s to ONNX with its KV cache ...", model.name)
    artifact = export_kv_onnx(model, workdir / "model.onnx", opset=opset)
    artifact.validation = validate_kv(model, artifact.path)
    log.info("exported in %.1fs; ONNX Runtime vs torch over prefill + decode: max abs err %.2e",
             artifact.seconds, artifact.validation["max_abs_err"])
    pre = model.preprocessing
    lm = LMReference([s["input_ids"][0] for s in evalset], {},
                     int(model.module.inner.model.config.vocab_size),
                     list(pre.get("eos_token_id") or []), int(pre["context_length"]))
    with TorchSession(model.module, artifact.inputs, artifact.outputs) as torch_session:
        session = as_lm(torch_session, lm)
        lm.reference = perplexity(session.logits, lm.sequences)
        lm.pool = decode_pool(session, lm.sequences)
    log.info("torch FP32 perplexity %.4f over %d lines (%d tokens)", lm.reference["perplexity"],
             len(lm.sequences), lm.reference["tokens"])
    return artifact, lm


def decode_pool(session: LMSession, sequences: list[np.ndarray], prefix: int = 3,
                rows: int = 2) -> dict[str, np.ndarray]:
    """Two eval lines' next tokens fed with the cache of their first ``prefix`` tokens."""
    longest = sorted(sequences, key=len)[-rows:]
    width = min(len(s) for s in longest)
    ids = np.stack([s[:width] for s in longest]).astype(np.int64)
    prefix = min(prefix, width - 1)
    head = ids[:, :prefix]
    out = session.step(prefill_feeds(head, np.ones_like(head), session.past_specs))
    feeds = {"input_ids": ids[:, prefix:],
             "attention_mask": np.ones_like(ids),
             "position_ids": np.tile(np.arange(prefix, width, dtype=np.int64), (rows, 1))}
    feeds.update(session._presents(out))
    return feeds


def lm_check(lm: LMReference, session: Session) -> dict[str, Any]:
    """Perplexity of ``session`` on the eval lines (the budget verdict adds the limit); the
    target's outputs on the stored pool are kept for its bundle."""
    from modelport.metrics_lm import perplexity_metrics

    lm_session = as_lm(session, lm)
    got = perplexity(lm_session.logits, lm.sequences)
    lm.last_pool_outputs = lm_session.step(lm.pool)
    return perplexity_metrics(got, lm.reference)


def lm_bench(settings: Any, session: Session, lm: LMReference, label: str) -> Any:
    """TTFT, decode p50/p99 and tokens/s with the LM harness (``settings``: LMBenchSettings)."""
    from modelport.bench.lm_harness import benchmark_lm

    result = benchmark_lm(as_lm(session, lm), settings, vocab=lm.vocab, label=label)
    log.info("%s: TTFT %.2f ms, decode p50 %.2f ms/token, %.1f tokens/s", label,
             result.ttft_ms, result.decode_ms_p50, result.tokens_per_s)
    return result
