"""Token latency of a language model or an encoder-decoder, measured as users feel it.

- TTFT: the time to the first new token's logits: for an LM the prefill of a prompt of
  ``prompt_tokens`` tokens (one graph call, past empty); for an encoder-decoder the encoder
  graph plus the first decoder step (``encoder_ms`` is the encoder graph alone).
- Decode: per-token latency of one-token steps (LM: with ``context`` tokens already in the
  cache; encoder-decoder: from the first step on, the cross cache fixed), p50 / p99 over the
  steps, and tokens/s = 1000 / mean decode ms (batch 1).
Both use the same two timing loops (``median_call_ms``, ``decode_ms``); the same feeds go to
every session (torch reference included), in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from modelport.bench.memory import peak_rss_mb


@dataclass(frozen=True)
class LMBenchSettings:
    prompt_tokens: int = 64
    context: int = 64  # tokens in the cache when decode steps are timed
    decode_steps: int = 32  # timed one-token steps per round
    rounds: int = 3  # prefill timings and decode rounds (the first one is warm-up)


@dataclass
class LMBenchResult:
    label: str
    settings: dict[str, Any]
    ttft_ms: float
    decode_ms_p50: float
    decode_ms_p99: float
    tokens_per_s: float
    peak_rss_mb: float
    fingerprint: dict[str, Any] = field(default_factory=dict)
    #: encoder-decoders: the encoder graph alone (TTFT adds the first decoder step)
    encoder_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fields(self) -> dict[str, Any]:
        """The report row's LM columns."""
        return {"ttft_ms": self.ttft_ms, "decode_ms_p50": self.decode_ms_p50,
                "decode_ms_p99": self.decode_ms_p99, "tokens_per_s": self.tokens_per_s,
                "peak_rss_mb": self.peak_rss_mb,
                **({} if self.encoder_ms is None else {"encoder_ms": self.encoder_ms})}


def fit_settings(settings: LMBenchSettings, context_length: int | None) -> LMBenchSettings:
    """Shrink prompt/context so context + decode steps stay inside the model's positions."""
    if not context_length:
        return settings
    room = max(2, context_length - settings.decode_steps - 1)
    return LMBenchSettings(min(settings.prompt_tokens, room), min(settings.context, room),
                           settings.decode_steps, settings.rounds)


def median_call_ms(call: Callable[[], Any], sync: Callable[[], None], rounds: int) -> float:
    """The median of ``rounds`` timed calls after one warm-up call, in ms."""
    times = []
    for _ in range(rounds + 1):
        t0 = time.perf_counter_ns()
        call()
        sync()
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(np.asarray(times[1:])) / 1e6)


def decode_ms(begin: Callable[[], Any], call: Callable[[Any], Any],
              advance: Callable[[Any, Any], Any], sync: Callable[[], None], *, steps: int,
              rounds: int) -> np.ndarray:
    """Per-step ms of ``rounds`` rounds of ``steps`` greedy steps (round 0 warms up): each round
    starts from ``begin()``; only ``call(state)`` is timed, ``advance(state, out)`` makes the
    next state (the argmax token, the grown cache)."""
    decode: list[int] = []
    for rnd in range(rounds + 1):
        state, times = begin(), []
        for _ in range(steps):
            t0 = time.perf_counter_ns()
            out = call(state)
            sync()
            times.append(time.perf_counter_ns() - t0)
            state = advance(state, out)
        if rnd:
            decode += times
    return np.asarray(decode, np.float64) / 1e6


def _result(label: str, settings: LMBenchSettings, ttft_ms: float, ms: np.ndarray,
            encoder_ms: float | None = None) -> LMBenchResult:
    peak, _ = peak_rss_mb()
    return LMBenchResult(label, asdict(settings), ttft_ms, float(np.percentile(ms, 50)),
                         float(np.percentile(ms, 99)), float(1000.0 / ms.mean()), peak,
                         encoder_ms=encoder_ms)


def benchmark_lm(session: Any, settings: LMBenchSettings, *, vocab: int, label: str = "",
                 seed: int = 0) -> LMBenchResult:
    """``session``: an LMSession (backends.lm_session). Random token ids: latency does not
    depend on which tokens they are."""
    from modelport.backends.lm_session import decode_feeds, prefill_feeds

    settings = fit_settings(settings, session.context_length)
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, vocab, (1, settings.prompt_tokens)).astype(np.int64)
    prefill = prefill_feeds(prompt, np.ones_like(prompt), session.past_specs)
    ttft = median_call_ms(lambda: session.step(prefill), session.synchronize, settings.rounds)
    context = rng.integers(0, vocab, (1, settings.context)).astype(np.int64)
    start = session.step(prefill_feeds(context, np.ones_like(context), session.past_specs))

    def begin() -> dict[str, np.ndarray]:
        return decode_feeds(context[:, -1:], np.ones_like(context),
                            np.array([[settings.context - 1]]), session._presents(start))

    def advance(feeds: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, Any]:
        nxt = out["logits"][:, -1].argmax(-1)[:, None].astype(np.int64)
        return decode_feeds(nxt, feeds["attention_mask"], feeds["position_ids"],
                            session._presents(out))

    ms = decode_ms(begin, session.step, advance, session.synchronize,
                   steps=settings.decode_steps, rounds=settings.rounds)
    return _result(label, settings, ttft, ms)


def benchmark_seq2seq(session: Any, ids: np.ndarray, mask: np.ndarray,
                      settings: LMBenchSettings, *, label: str = "") -> LMBenchResult:
    """``session``: a Seq2SeqSession (backends.seq2seq_session); ``ids``/``mask``: one input
    [1, src]. The encoder graph, encoder + first step (TTFT), then ``decode_steps`` greedy
    steps (fewer when the decoder's position table is shorter), eos not stopping them."""
    steps = settings.decode_steps
    if session.max_source_length:  # BART, Marian, Pegasus: the decoder's positions
        steps = max(1, min(steps, session.max_source_length - 2))
    settings = LMBenchSettings(int(ids.shape[1]), 0, steps, settings.rounds)
    feeds = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
    encoder = median_call_ms(lambda: session._call(session.encoder, feeds), session.synchronize,
                             settings.rounds)
    ttft = median_call_ms(lambda: session.encode(feeds["input_ids"], feeds["attention_mask"]),
                          session.synchronize, settings.rounds)
    logits, past, cross = session.encode(feeds["input_ids"], feeds["attention_mask"])
    first = logits.argmax(-1).astype(np.int64)

    def call(state: tuple[np.ndarray, dict[str, np.ndarray]]) -> Any:
        return session.step(state[0], feeds["attention_mask"], state[1], cross)

    def advance(state: Any, out: tuple[np.ndarray, dict[str, np.ndarray]]) -> Any:
        return out[0].argmax(-1).astype(np.int64), out[1]

    ms = decode_ms(lambda: (first, past), call, advance, session.synchronize, steps=steps,
                   rounds=settings.rounds)
    return _result(label, settings, ttft, ms, encoder_ms=encoder)
