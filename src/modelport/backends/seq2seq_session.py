"""Seq2SeqSession: generation over the two graphs of an encoder-decoder bundle, on any runtime.

The encoder graph (models.hf.seq2seq) runs once per input batch and returns the
cross-attention cache; every token, the first included (with an empty self-attention past),
is one decoder-graph call with both caches. Greedy and beam search follow transformers'
``generate`` (same rules from the folder's generation config, same beam bookkeeping:
backends.seq2seq_beam), so FP32 bundles give transformers' tokens.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelport.backends.base import Session
from modelport.backends.seq2seq_logits import GenerationRules
from modelport.errors import InputError, ModelportError

#: ``preprocessing.audio.kind`` -> "module:function" giving load_graphs' ``make`` for bundles
#: whose encoder takes audio features (imported when used)
SESSION_MAKERS = {"whisper": "modelport.backends.whisper_session:whisper_maker"}


class Seq2SeqSession(Session):
    """``generate(input_ids, attention_mask)`` -> decoder tokens [batch, n] (start token first,
    as transformers returns them); ``infer`` runs the encoder graph."""

    def __init__(self, encoder: Session, decoder: Session, rules: GenerationRules, *,
                 max_source_length: int | None = None) -> None:
        super().__init__(list(encoder.inputs.values()), list(encoder.outputs.values()))
        self.encoder, self.decoder, self.rules = encoder, decoder, rules
        self.max_source_length = max_source_length
        self.cross_names = [n for n in encoder.outputs if n.startswith("cross.")]
        self.present_names = [n for n in decoder.outputs if n.startswith("present.")]
        #: seconds of the last generate(): the encoder call + first step, each later step
        self.timings: dict[str, Any] = {}

    # -- the graphs ---------------------------------------------------------------------
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.encoder._infer(feeds)

    def _call(self, session: Session, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return session._infer(feeds)
        except ModelportError:
            raise
        except Exception as exc:  # noqa: BLE001 - a runtime's own error, said in one line
            raise session._failure(exc) from None

    def encode(self, ids: np.ndarray, mask: np.ndarray
               ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The encoder graph, then the first decoder step (empty past): (its logits [b, vocab],
        the self cache as pasts, the cross cache)."""
        return self.start({"input_ids": ids, "attention_mask": mask}, mask)

    def start(self, feeds: Mapping[str, np.ndarray], mask: np.ndarray,
              prompt: np.ndarray | None = None
              ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The encoder graph on ``feeds``, then the decoder over ``prompt`` [batch, P] (default:
        the start token) one token a step, the first with an empty past: (the last logits, the
        self cache as pasts, the cross cache). ``mask`` [batch, ...] is fed to a decoder that
        takes ``attention_mask`` (text models; Whisper's decoder takes none)."""
        out = self._call(self.encoder, feeds)
        cross = {n: out[n] for n in self.cross_names}
        past = {n: np.zeros((*v.shape[:2], 0, v.shape[3]), np.float32)
                for n, v in ((n.replace("cross.", "past.", 1), v) for n, v in cross.items())}
        if prompt is None:
            prompt = np.full((mask.shape[0], 1), self.rules.decoder_start_token_id, np.int64)
        for k in range(prompt.shape[1]):
            logits, past = self.step(prompt[:, k], mask, past, cross)
        return logits, past, cross

    def step(self, tokens: np.ndarray, mask: np.ndarray, past: Mapping[str, np.ndarray],
             cross: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        feeds = {"decoder_input_ids": tokens.astype(np.int64)[:, None], **past, **cross}
        if "attention_mask" in self.decoder.inputs:
            feeds["attention_mask"] = mask
        out = self._call(self.decoder, feeds)
        return out["logits"][:, -1, :], self.pasts(out)

    def pasts(self, out: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n.replace("present.", "past.", 1): out[n] for n in self.present_names}

    def synchronize(self) -> None:
        self.encoder.synchronize()
        self.decoder.synchronize()

    def close(self) -> None:
        self.encoder.close()
        self.decoder.close()

    # -- generation ---------------------------------------------------------------------
    def generate(self, input_ids: Any, attention_mask: Any = None, *,
                 max_new_tokens: int | None = None, num_beams: int | None = None) -> np.ndarray:
        """Greedy (``num_beams`` 1) or beam search; a batch is right-padded with ``attention_mask``
        0 on the padding, as tokenizers give it. Defaults come from the generation config."""
        ids, mask = self.check_input(input_ids, attention_mask)
        beams, new = self.generation_args(max_new_tokens, num_beams)
        max_length = new + 1
        if self.max_source_length is not None and max_length > self.max_source_length:
            # BART, Marian, Pegasus: the decoder's position table is as long as the encoder's
            raise InputError(f"max_new_tokens {new} + the start token exceeds the decoder's "
                             f"{self.max_source_length} positions: lower --max-new-tokens to at "
                             f"most {self.max_source_length - 1}")
        t0 = time.perf_counter()
        logits, past, cross = self.encode(ids, mask)
        self.timings = {"encoder_s": time.perf_counter() - t0, "steps_s": []}
        prompt = np.full((ids.shape[0], 1), self.rules.decoder_start_token_id, np.int64)
        return self.decode(logits, past, cross, mask, prompt, max_length, beams)

    def generation_args(self, max_new_tokens: Any, num_beams: Any) -> tuple[int, int]:
        """(beams, new tokens), the generation config's when not given; InputError if bad."""
        rules = self.rules
        beams = rules.num_beams if num_beams is None else num_beams
        if isinstance(beams, bool) or not isinstance(beams, (int, np.integer)) or beams < 1:
            raise InputError(f"num_beams must be an integer >= 1, got {beams!r}")
        new = max_new_tokens if max_new_tokens is not None else (
            rules.max_new_tokens or max(rules.max_length - 1, 1))
        if isinstance(new, bool) or not isinstance(new, (int, np.integer)) or new < 1:
            raise InputError(f"max_new_tokens must be an integer >= 1, got {new!r}")
        return int(beams), int(new)

    def decode(self, logits: np.ndarray, past: dict[str, np.ndarray],
               cross: dict[str, np.ndarray], mask: np.ndarray, prompt: np.ndarray,
               max_length: int, beams: int) -> np.ndarray:
        """Greedy or beam search on from the logits after ``prompt`` [batch, P]: the tokens
        [batch, n], the prompt first; ``max_length`` counts the prompt."""
        if beams == 1:
            return self._greedy(logits, past, cross, mask, prompt, max_length)
        from modelport.backends.seq2seq_beam import beam_search

        return beam_search(self, logits, past, cross, mask, max_length, beams, prompt)

    def _greedy(self, logits: np.ndarray, past: dict[str, np.ndarray],
                cross: dict[str, np.ndarray], mask: np.ndarray, prompt: np.ndarray,
                max_length: int) -> np.ndarray:
        rules = self.rules
        seqs = prompt.astype(np.int64)
        begin = seqs.shape[1]
        done = np.zeros(mask.shape[0], bool)
        while True:
            scores = rules.apply(logits.astype(np.float32).copy(), seqs, max_length, begin)
            nxt = np.where(done, rules.pad, scores.argmax(-1)).astype(np.int64)
            seqs = np.concatenate([seqs, nxt[:, None]], axis=1)
            done |= np.isin(nxt, rules.eos_token_id)
            if done.all() or seqs.shape[1] >= max_length:
                return seqs
            t0 = time.perf_counter()
            logits, past = self.step(nxt, mask, past, cross)
            self.timings["steps_s"].append(time.perf_counter() - t0)

    def check_input(self, input_ids: Any, attention_mask: Any) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(input_ids)
        if ids.ndim != 2 or ids.shape[1] < 1 or not np.issubdtype(ids.dtype, np.integer):
            raise InputError(f"input_ids must be an int64 array [batch, n] with n >= 1, got "
                             f"{ids.dtype}{list(ids.shape)}")
        mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask)
        if mask.shape != ids.shape:
            raise InputError(f"attention_mask {list(mask.shape)} must match input_ids "
                             f"{list(ids.shape)}")
        if (mask.sum(axis=1) == 0).any():
            raise InputError("an input row is all padding (attention_mask all 0): give some text")
        from modelport.tasks.input_limit import check_length

        check_length(int(ids.shape[1]), self.max_source_length, what="input text")
        return ids.astype(np.int64), mask.astype(np.int64)


def time_generation(session: Seq2SeqSession, ids: np.ndarray, mask: np.ndarray, *,
                    new_tokens: int = 20, runs: int = 3) -> dict[str, float]:
    """Batch-1 greedy decoding of one input, timed by the token-latency harness
    (bench.lm_harness.benchmark_seq2seq): encoder ms, TTFT (encoder + first step), ms per
    decoder step p50/p99 over ``new_tokens`` steps x ``runs`` rounds after a warm-up round,
    tokens/s, peak memory; the row's columns."""
    from modelport.bench.lm_harness import LMBenchSettings, benchmark_seq2seq

    settings = LMBenchSettings(decode_steps=new_tokens, rounds=runs)
    return benchmark_seq2seq(session, ids, mask, settings).fields()


def load_graphs(backend: Any, target: Any, graphs: Mapping[str, tuple[Any, list, list, dict]],
                rules: GenerationRules, max_source_length: int | None,
                threads: int | None, *, make: Any = None, **options: Any) -> Seq2SeqSession:
    """graphs: name -> (path, inputs, outputs, session options) of "encoder" and "decoder";
    ``make(encoder, decoder)`` builds the session (default: a Seq2SeqSession)."""
    sessions = {}
    try:
        for name in ("encoder", "decoder"):
            path, inputs, outputs, saved = graphs[name]
            sessions[name] = backend.load(path, target=target, inputs=inputs, outputs=outputs,
                                          threads=threads, **{**saved, **options})
    except BaseException:
        for opened in sessions.values():
            opened.close()
        raise
    if make is not None:
        return make(sessions["encoder"], sessions["decoder"])
    return Seq2SeqSession(sessions["encoder"], sessions["decoder"], rules,
                          max_source_length=max_source_length)


def seq2seq_session(bundle: Any, threads: int | None = None, **options: Any) -> Seq2SeqSession:
    """Both graphs of an encoder-decoder bundle (text2text-generation, Whisper), loaded with
    the bundle's runtime."""
    import json

    from modelport import registry
    from modelport.specs import TensorSpec

    target = bundle.target
    backend = registry.get_backend(target.runtime)()
    graphs = {name: (bundle.path / g["file"], [TensorSpec.from_dict(d) for d in g["inputs"]],
                     [TensorSpec.from_dict(d) for d in g["outputs"]],
                     g.get("session_options") or {})
              for name, g in bundle.manifest["graphs"].items()}
    pre = bundle.manifest.get("preprocessing") or {}
    config = json.loads((bundle.path / pre["generation_config"]).read_text("utf-8"))
    kind = (pre.get("audio") or {}).get("kind")
    if kind in SESSION_MAKERS:  # Whisper: a log-mel encoder, its own session
        import importlib

        module, _, name = SESSION_MAKERS[kind].partition(":")
        options["make"] = getattr(importlib.import_module(module), name)(bundle, config, pre)
    return load_graphs(backend, target, graphs, GenerationRules.from_dict(config),
                       pre.get("max_source_length"), threads, bundle=bundle, **options)
