"""Token latency of a language model, measured as users feel it.

- TTFT: the prefill of a prompt of ``prompt_tokens`` tokens (one graph call, past empty) -
  the time to the first new token's logits.
- Decode: per-token latency of one-token steps with ``context`` tokens already in the cache
  (p50 / p99 over the steps), and tokens/s = 1000 / mean decode ms (batch 1).
The same feeds go to every session (torch reference included), in the same run.
"""

from __future__ import annotations

import time
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fields(self) -> dict[str, Any]:
        """The report row's LM columns."""
        return {"ttft_ms": self.ttft_ms, "decode_ms_p50": self.decode_ms_p50,
                "decode_ms_p99": self.decode_ms_p99, "tokens_per_s": self.tokens_per_s,
                "peak_rss_mb": self.peak_rss_mb}


def fit_settings(settings: LMBenchSettings, context_length: int | None) -> LMBenchSettings:
    """Shrink prompt/context so context + decode steps stay inside the model's positions."""
    if not context_length:
        return settings
    room = max(2, context_length - settings.decode_steps - 1)
    return LMBenchSettings(min(settings.prompt_tokens, room), min(settings.context, room),
                           settings.decode_steps, settings.rounds)


def benchmark_lm(session: Any, settings: LMBenchSettings, *, vocab: int, label: str = "",
                 seed: int = 0) -> LMBenchResult:
    """``session``: an LMSession (backends.lm_session). Random token ids: latency does not
    depend on which tokens they are."""
    from modelport.backends.lm_session import decode_feeds, prefill_feeds

    settings = fit_settings(settings, session.context_length)
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, vocab, (1, settings.prompt_tokens)).astype(np.int64)
    prefill = prefill_feeds(prompt, np.ones_like(prompt), session.past_specs)
    ttft = []
    for _ in range(settings.rounds + 1):
        t0 = time.perf_counter_ns()
        session.step(prefill)
        session.synchronize()
        ttft.append(time.perf_counter_ns() - t0)
    context = rng.integers(0, vocab, (1, settings.context)).astype(np.int64)
    start = session.step(prefill_feeds(context, np.ones_like(context), session.past_specs))
    decode: list[int] = []
    for rnd in range(settings.rounds + 1):
        feeds = decode_feeds(context[:, -1:], np.ones_like(context),
                             np.array([[settings.context - 1]]), session._presents(start))
        times = []
        for _ in range(settings.decode_steps):
            t0 = time.perf_counter_ns()
            out = session.step(feeds)
            session.synchronize()
            times.append(time.perf_counter_ns() - t0)
            nxt = out["logits"][:, -1].argmax(-1)[:, None].astype(np.int64)
            feeds = decode_feeds(nxt, feeds["attention_mask"], feeds["position_ids"],
                                 session._presents(out))
        if rnd:  # round 0 warms up
            decode += times
    ms = np.asarray(decode, np.float64) / 1e6
    peak, _ = peak_rss_mb()
    return LMBenchResult(label, asdict(settings), float(np.median(np.asarray(ttft[1:])) / 1e6),
                         float(np.percentile(ms, 50)), float(np.percentile(ms, 99)),
                         float(1000.0 / ms.mean()), peak)
