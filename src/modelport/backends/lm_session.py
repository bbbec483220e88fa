"""LMSession: generation and scoring over any backend's session of a KV-cache graph.

The graph (models.hf.causal_lm) is one function of (tokens, mask, positions, past) ->
(logits, present); this loop is the same for every runtime, so ONNX Runtime, OpenVINO and the
torch reference generate and score identically. The prompt is run once (prefill, past of
length 0); each decode step then feeds one token and the presents of the step before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelport.backends.base import Session
from modelport.errors import InputError, ModelportError
from modelport.specs import TensorSpec


def prefill_feeds(input_ids: np.ndarray, attention_mask: np.ndarray,
                  past_specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """Feeds for the prompt: positions count only real tokens (left padding gets 0), past
    tensors are empty."""
    batch = input_ids.shape[0]
    positions = np.clip(np.cumsum(attention_mask, axis=1) - 1, 0, None).astype(np.int64)
    feeds = {"input_ids": input_ids.astype(np.int64),
             "attention_mask": attention_mask.astype(np.int64), "position_ids": positions}
    for spec in past_specs:
        feeds[spec.name] = np.zeros((batch, spec.shape[1], 0, spec.shape[3]), np.float32)
    return feeds


def decode_feeds(next_ids: np.ndarray, mask: np.ndarray, last_positions: np.ndarray,
                 past: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Feeds for one decode step: one new token per row, the mask grown by one."""
    batch = next_ids.shape[0]
    return {"input_ids": next_ids.astype(np.int64),
            "attention_mask": np.concatenate([mask, np.ones((batch, 1), np.int64)], axis=1),
            "position_ids": (last_positions + 1).astype(np.int64), **past}


class LMSession(Session):
    """Wraps the session of a KV-cache graph; ``infer`` passes through, ``generate`` decodes."""

    def __init__(self, inner: Session, *, eos_token_id: Sequence[int] = (),
                 context_length: int | None = None, pad_token_id: int | None = None) -> None:
        super().__init__(list(inner.inputs.values()), list(inner.outputs.values()))
        self.inner = inner
        self.eos = [int(e) for e in eos_token_id]
        self.context_length = context_length
        self.pad_token_id = pad_token_id if pad_token_id is not None else \
            (self.eos[0] if self.eos else 0)
        self.past_specs = [s for s in self.inputs.values() if s.name.startswith("past_")]
        #: input_ids length fed at each step of the last generate(): [prompt, 1, 1, ...]
        self.step_lengths: list[int] = []
        #: the graph takes ``logits_to_keep`` (backends/onnxruntime/lm_head.py): generation
        #: feeds 1 at prefill, so the LM head runs on the last position only
        self.keep_last = "logits_to_keep" in getattr(inner, "optional_inputs", ())
        #: whether the last generate() wrote the cache into one preallocated buffer per layer
        #: (the runtime's kv_cache(); backends/onnxruntime/kv_buffer.py) instead of copying it
        self.kv_buffer_used = False

    # -- the runtime ---------------------------------------------------------------------
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run(feeds)

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One graph call; several new tokens for several rows on a non-empty past (a scored
        continuation, the bundle's verification pool) go one row at a time: ONNX Runtime's
        CPU GroupQueryAttention (backends/onnxruntime/lm_attention.py) refuses that call, and
        rows never see each other, so the result is the same."""
        ids = feeds["input_ids"]
        past = next((feeds[s.name] for s in self.past_specs if s.name in feeds), None)
        if ids.shape[0] < 2 or ids.shape[1] < 2 or past is None or past.shape[2] == 0:
            return self.inner._infer(feeds)
        rows = [self.inner._infer({k: v[r:r + 1] if v.shape[:1] == ids.shape[:1] else v
                                   for k, v in feeds.items()})
                for r in range(ids.shape[0])]
        return {k: np.concatenate([row[k] for row in rows]) for k in rows[0]}

    def step(self, feeds: Mapping[str, np.ndarray], cache: Any = None) -> dict[str, np.ndarray]:
        """One graph call (on ``cache``, a kv_cache(), when given: no pasts in ``feeds``).
        Skips Session.check_feeds: the feeds are built here, and the prefill's empty past
        (size 0) is valid for this graph though check_feeds refuses it."""
        try:
            return cache.step(feeds) if cache is not None else self._run(feeds)
        except ModelportError:
            raise
        except Exception as exc:  # noqa: BLE001 - a runtime's own error, said in one line
            raise self.inner._failure(exc) from None

    def synchronize(self) -> None:
        self.inner.synchronize()

    def close(self) -> None:
        self.inner.close()

    # -- generation ----------------------------------------------------------------------
    def generate(self, input_ids: np.ndarray, max_new_tokens: int = 32, *,
                 attention_mask: np.ndarray | None = None, temperature: float | None = None,
                 top_k: int | None = None, seed: int | None = 0) -> np.ndarray:
        """int64 [b, n] -> int64 [b, n + k], k <= max_new_tokens: greedy unless ``temperature``
        (optionally ``top_k``) is given, seeded; stops when every row has produced an eos.
        A batch of prompts must be left-padded, with ``attention_mask`` 0 on the padding."""
        ids, mask = self._check_prompt(input_ids, attention_mask, max_new_tokens)
        rng = np.random.default_rng(seed)
        cache = self._kv_cache(ids.shape[0], ids.shape[1] + max_new_tokens)
        self.kv_buffer_used = cache is not None
        feeds = prefill_feeds(ids, mask, () if cache else self.past_specs)
        if self.keep_last:  # only the last position's logits are read
            feeds["logits_to_keep"] = np.ones(1, np.int64)
        done = np.zeros(ids.shape[0], bool)
        tokens = [ids]
        self.step_lengths = []
        for _ in range(max_new_tokens):
            self.step_lengths.append(int(feeds["input_ids"].shape[1]))
            out = self.step(feeds, cache)
            nxt = self._choose(out["logits"][:, -1, :], rng, temperature, top_k)
            nxt = np.where(done, self.pad_token_id, nxt).astype(np.int64)
            tokens.append(nxt[:, None])
            done |= np.isin(nxt, self.eos)
            if done.all():
                break
            feeds = decode_feeds(nxt[:, None], feeds["attention_mask"],
                                 feeds["position_ids"][:, -1:], {} if cache else
                                 self._presents(out))
        return np.concatenate(tokens, axis=1)

    def _kv_cache(self, batch: int, length: int) -> Any:
        """The runtime's preallocated cache for one generation, or None (concat the past)."""
        make = getattr(self.inner, "kv_cache", None)
        if make is None:
            return None
        try:
            return make(self.past_specs, batch, length)
        except Exception as exc:  # noqa: BLE001 - a runtime's own error, said in one line
            raise self.inner._failure(exc) from None

    def _presents(self, out: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {s.name: out[s.name.replace("past_key_values", "present", 1)]
                for s in self.past_specs}

    def _check_prompt(self, input_ids: Any, attention_mask: Any, max_new_tokens: int
                      ) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(input_ids)
        if ids.ndim != 2 or ids.shape[1] < 1 or not np.issubdtype(ids.dtype, np.integer):
            raise InputError(f"input_ids must be an int64 array [batch, n] with n >= 1, got "
                             f"{ids.dtype}{list(ids.shape)}")
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if attention_mask is None:
            if ids.shape[0] > 1:
                raise InputError(f"a batch of {ids.shape[0]} prompts needs attention_mask: "
                                 "left-pad the shorter prompts and give the mask (0 on padding)"
                                 ", or generate one prompt at a time")
            attention_mask = np.ones_like(ids)
        mask = np.asarray(attention_mask).astype(np.int64)
        if mask.shape != ids.shape:
            raise InputError(f"attention_mask {list(mask.shape)} must match input_ids "
                             f"{list(ids.shape)}")
        if (mask[:, -1] == 0).any():
            raise InputError("prompts must be left-padded (attention_mask ends in 1 on every "
                             "row): the new tokens follow the last column")
        from modelport.tasks.input_limit import check_length

        check_length(int(ids.shape[1]), self.context_length, new_tokens=max_new_tokens)
        return ids.astype(np.int64), mask

    @staticmethod
    def _choose(logits: np.ndarray, rng: np.random.Generator, temperature: float | None,
                top_k: int | None) -> np.ndarray:
        if not temperature:
            return logits.argmax(-1)
        scaled = logits.astype(np.float64) / float(temperature)
        if top_k:
            kth = np.sort(scaled, axis=-1)[:, -int(top_k)][:, None]
            scaled = np.where(scaled < kth, -np.inf, scaled)
        probs = np.exp(scaled - scaled.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        return np.array([rng.choice(len(p), p=p) for p in probs])

    # -- scoring -------------------------------------------------------------------------
    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Logits of right-padded sequences in one prefill (padding after the tokens cannot
        reach them through causal attention)."""
        return self.step(prefill_feeds(input_ids, attention_mask, self.past_specs))["logits"]


def lm_session(inner: Session, preprocessing: Mapping[str, Any]) -> LMSession:
    """The LMSession of a text-generation bundle (eos and context from its manifest)."""
    return LMSession(inner, eos_token_id=preprocessing.get("eos_token_id") or (),
                     context_length=preprocessing.get("context_length"),
                     pad_token_id=preprocessing.get("pad_token_id"))
