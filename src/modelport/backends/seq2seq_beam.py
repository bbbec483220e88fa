"""Beam search over a Seq2SeqSession, step for step as transformers' ``_beam_search`` does it
(transformers >= 4.50: top 2*beams candidates per input, finished hypotheses scored by
sum log-prob / generated length ** length_penalty, the same early-stop heuristic), in numpy.

The encoder runs once per input; its caches are repeated per beam and the self-attention
cache is reordered after every step by the beams that survived.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NEG = np.float32(-1.0e9)


def _topk(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest per row, largest first (ties: lower index first)."""
    return np.argsort(-x, axis=-1, kind="stable")[..., :k]


def _gather(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """x [B, N, ...] rows picked per batch by idx [B, k]."""
    return x[np.arange(x.shape[0])[:, None], idx]


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def beam_search(sess: Any, logits: np.ndarray, past: dict[str, np.ndarray],
                cross: dict[str, np.ndarray], mask: np.ndarray, max_length: int,
                beams: int, prompt: np.ndarray | None = None) -> np.ndarray:
    """Best hypothesis per input: int64 [batch, n], the decoder prompt first (``prompt``
    [batch, P], default the start token; ``max_length`` counts it)."""
    import time

    rules = sess.rules
    batch = mask.shape[0]

    def rep(a: np.ndarray) -> np.ndarray:
        return np.repeat(a, beams, axis=0)

    logits, mask = rep(logits), rep(mask)
    past = {k: rep(v) for k, v in past.items()}
    cross = {k: rep(v) for k, v in cross.items()}
    eos = rules.eos_token_id
    keep = max(2, 1 + len(eos)) * beams
    top_mask = np.arange(keep) < beams
    fill = (rules.pad_token_id or eos[0]) if eos else -1
    penalty, early = rules.length_penalty, rules.early_stopping
    running = np.full((batch, beams, max_length), fill, np.int64)
    if prompt is None:
        prompt = np.full((batch, 1), rules.decoder_start_token_id, np.int64)
    start = prompt.shape[1]
    running[:, :, :start] = prompt[:, None, :]
    sequences = running.copy()
    run_scores = np.zeros((batch, beams), np.float32)
    run_scores[:, 1:] = NEG
    beam_scores = np.full((batch, beams), NEG, np.float32)
    finished = np.zeros((batch, beams), bool)
    lengths = np.zeros((batch, beams), np.int64)  # generated tokens of each finished hypothesis
    unsatisfied = np.ones((batch, 1), bool)
    cur = start
    while True:
        vocab = logits.shape[-1]
        logp = rules.apply(log_softmax(logits), running[:, :, :cur].reshape(batch * beams, cur),
                           max_length, start)
        logp = (logp.reshape(batch, beams, vocab) + run_scores[:, :, None]).reshape(batch, -1)
        idx = _topk(logp, keep)
        topk_lp = np.take_along_axis(logp, idx, axis=1)
        source, token = idx // vocab, idx % vocab
        topk_seqs = _gather(running, source)
        topk_seqs[:, :, cur] = token
        hits = np.isin(token, eos) | (cur + 1 >= max_length)
        # the live beams of the next step: the best candidates that did not finish
        live_lp = topk_lp + hits.astype(np.float32) * NEG
        nxt = _topk(live_lp, beams)
        running = _gather(topk_seqs, nxt)
        run_scores = np.take_along_axis(live_lp, nxt, axis=1)
        came_from = np.take_along_axis(source, nxt, axis=1)
        # finished hypotheses: kept when better than the ones already kept
        just = hits & top_mask[None, :]
        done_lp = topk_lp / np.float32(float(cur + 1 - start) ** penalty)
        full = finished.all(-1, keepdims=True) & (early is True)
        done_lp = done_lp + full * NEG + (~unsatisfied) * NEG + (~just) * NEG
        merged = np.concatenate([beam_scores, done_lp.astype(np.float32)], axis=1)
        pick = _topk(merged, beams)
        sequences = _gather(np.concatenate([sequences, topk_seqs], axis=1), pick)
        beam_scores = np.take_along_axis(merged, pick, axis=1)
        finished = np.take_along_axis(np.concatenate([finished, just], axis=1), pick, axis=1)
        lengths = np.take_along_axis(
            np.concatenate([lengths, np.full((batch, keep), cur + 1 - start)], axis=1), pick,
            axis=1)
        cur += 1
        best_len = (max_length - start) if (early == "never" and penalty > 0.0) else (cur - start)
        best = run_scores[:, :1] / np.float32(float(best_len) ** penalty)
        worst = np.where(finished, beam_scores.min(axis=1, keepdims=True), NEG)
        unsatisfied = unsatisfied & (best > worst).any(axis=-1, keepdims=True)
        if not (unsatisfied.any() and not (finished.all() and early is True)
                and not hits.all()):
            break
        order = (came_from + np.arange(batch)[:, None] * beams).reshape(-1)
        past = {k: v[order] for k, v in past.items()}
        t0 = time.perf_counter()
        logits, past = sess.step(running[:, :, cur - 1].reshape(-1), mask, past, cross)
        sess.timings["steps_s"].append(time.perf_counter() - t0)
    return sequences[:, 0, :start + int(lengths[:, 0].max())]
