"""WhisperSession: speech -> tokens -> text over the two graphs of a Whisper bundle, on any
runtime, with no torch: numpy log-mel features (tasks.whisper_features), the decoder prompt
(backends.whisper_prompt), then Seq2SeqSession's greedy / beam search, which applies the
generation config's rules (suppress_tokens, begin_suppress_tokens after the prompt, eos).

Audio longer than the model's window (30 s) is cut into consecutive windows, each
transcribed on its own (no context carried over) and the results joined in order.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.backends.base import Session
from modelport.backends.seq2seq_logits import GenerationRules
from modelport.backends.seq2seq_session import Seq2SeqSession
from modelport.errors import InputError, UsageError

#: windows decoded in one batch at most (the cross cache of a batch grows with it: whisper
#: large, 32 layers x 1500 positions x 1280, holds 0.5 GB per window)
WINDOW_BATCH = 8


class WhisperSession(Seq2SeqSession):
    """``generate(audio)`` -> tokens [batch, n] (the prompt first); ``transcribe(audio)`` ->
    texts. ``audio``: a file path, mono samples at the model's rate, or a list of those; or
    ``input_features`` [batch, n_mels, frames] already computed."""

    def __init__(self, encoder: Session, decoder: Session, rules: GenerationRules,
                 config: Mapping[str, Any], params: Mapping[str, Any], tokenizer: Path,
                 max_target_positions: int = 448) -> None:
        super().__init__(encoder, decoder, rules)
        self.config, self.params, self.tokenizer_path = dict(config), dict(params), tokenizer
        self.max_target_positions = int(max_target_positions)
        self._tokenizer: Any = None
        #: prompt tokens of the last generate(): where each row's generated tokens begin
        self.prompt_length = 0

    # -- inputs -------------------------------------------------------------------------
    def clips(self, audio: Any) -> list[np.ndarray]:
        """Mono samples at the model's rate per input; files are read and resampled."""
        from modelport.tasks.audio import read_audio

        items = audio if isinstance(audio, (list, tuple)) else [audio]
        if not items:
            raise UsageError("no audio given")
        rate = int(self.params["sampling_rate"])
        out = []
        for item in items:
            if isinstance(item, (str, Path)):
                wave = read_audio(item, rate)
            else:
                wave = np.asarray(item, dtype=np.float32)
                if wave.ndim != 1:
                    raise UsageError(f"audio arrays are mono samples at {rate} Hz (one axis); "
                                     f"got shape {list(wave.shape)}")
            if wave.size == 0:
                raise UsageError("the audio holds no samples: give a non-empty clip")
            out.append(wave)
        return out

    def windows(self, audio: Any) -> tuple[np.ndarray, list[int]]:
        """(input_features of every window [windows, n_mels, frames], windows per input)."""
        from modelport.tasks.whisper_features import input_features, split_windows

        if isinstance(audio, np.ndarray) and audio.ndim == 3:
            want = (int(self.params["feature_size"]), int(self.params["nb_max_frames"]))
            if tuple(audio.shape[1:]) != want or audio.shape[0] == 0:
                raise InputError(f"input_features must be [batch, {want[0]}, {want[1]}] (one "
                                 f"30 s window each), got {list(audio.shape)}")
            return audio.astype(np.float32), [1] * audio.shape[0]
        parts = [split_windows(clip, self.params) for clip in self.clips(audio)]
        return (input_features([w for p in parts for w in p], self.params),
                [len(p) for p in parts])

    # -- generation ---------------------------------------------------------------------
    def generate(self, audio: Any, attention_mask: Any = None, *, language: str | None = None,
                 task: str | None = None, max_new_tokens: int | None = None,
                 num_beams: int | None = None) -> np.ndarray:  # type: ignore[override]
        """Tokens per input [batch, n], right-padded with the pad token: the prompt, then the
        generated tokens of each window in turn, the last eos kept."""
        if attention_mask is not None:
            raise InputError("Whisper takes no attention_mask: give the audio only")
        features, counts = self.windows(audio)
        options = {"language": language, "task": task, "max_new_tokens": max_new_tokens,
                   "num_beams": num_beams}
        parts = [self.generate_features(features[at:at + WINDOW_BATCH], **options)
                 for at in range(0, features.shape[0], WINDOW_BATCH)]
        rows = parts[0] if len(parts) == 1 else self._stack(parts)
        if all(c == 1 for c in counts):
            return rows
        return self._join(rows, counts, self.prompt_length)

    def generate_features(self, features: np.ndarray, *, language: str | None = None,
                          task: str | None = None, max_new_tokens: int | None = None,
                          num_beams: int | None = None) -> np.ndarray:
        """One window per row of ``features``: prompt + generated tokens [batch, n]."""
        from modelport.backends.whisper_prompt import DETECT, detect_languages, prompt_tokens

        prompt = prompt_tokens(self.config, language, task)
        if max_new_tokens is None and not self.rules.max_new_tokens:
            # the generation config's max_length counts the prompt, as in transformers
            max_new_tokens = max(self.rules.max_length - len(prompt), 1)
        beams, new = self.generation_args(max_new_tokens, num_beams)
        if len(prompt) + new > self.max_target_positions:
            raise InputError(f"the {len(prompt)} prompt tokens + max_new_tokens {new} exceed "
                             f"the decoder's {self.max_target_positions} positions: lower "
                             f"--max-new-tokens to at most "
                             f"{self.max_target_positions - len(prompt)}")
        batch = features.shape[0]
        mask = np.ones((batch, 1), np.int64)  # batch size only: the decoder takes no mask
        rows = np.tile(np.asarray(prompt, np.int64), (batch, 1))
        cut = prompt.index(DETECT) if DETECT in prompt else len(prompt)
        t0 = time.perf_counter()
        logits, past, cross = self.start({"input_features": features}, mask, rows[:, :cut])
        if cut < len(prompt):  # the language read from the first step, then the rest
            rows[:, cut] = detect_languages(logits, self.config)
            for k in range(cut, len(prompt)):
                logits, past = self.step(rows[:, k], mask, past, cross)
        self.timings = {"encoder_s": time.perf_counter() - t0, "steps_s": []}
        self.prompt_length = len(prompt)
        return self.decode(logits, past, cross, mask, rows, len(prompt) + new, beams)

    def _stack(self, parts: list[np.ndarray]) -> np.ndarray:
        """Row blocks of different widths as one array, right-padded with the pad token."""
        out = np.full((sum(p.shape[0] for p in parts), max(p.shape[1] for p in parts)),
                      self.rules.pad, np.int64)
        at = 0
        for part in parts:
            out[at:at + part.shape[0], :part.shape[1]] = part
            at += part.shape[0]
        return out

    def _join(self, rows: np.ndarray, counts: list[int], start: int) -> np.ndarray:
        """Each input's windows as one row: the first window's prompt, every window's
        generated tokens (without their eos), one eos at the end."""
        pad, eos = self.rules.pad, self.rules.eos_token_id
        joined, at = [], 0
        for count in counts:
            tokens = list(rows[at][:start])
            for row in rows[at:at + count]:
                tokens += [int(t) for t in row[start:] if t not in eos and t != pad]
            joined.append(tokens + eos[:1])
            at += count
        out = np.full((len(joined), max(len(j) for j in joined)), pad, np.int64)
        for i, tokens in enumerate(joined):
            out[i, :len(tokens)] = tokens
        return out

    def default_prompt_length(self) -> int:
        """The prompt's length without --language/--task (what export stored samples with)."""
        from modelport.backends.whisper_prompt import prompt_tokens

        return len(prompt_tokens(self.config))

    # -- text ---------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
        return self._tokenizer

    def decode_tokens(self, rows: np.ndarray) -> list[str]:
        return [self.tokenizer.decode([int(t) for t in row], skip_special_tokens=True).strip()
                for row in rows]

    def transcribe(self, audio: Any, **options: Any) -> list[str]:
        """The text of each input (windows of 30 s joined); options as for generate()."""
        return self.decode_tokens(self.generate(audio, **options))


def whisper_maker(bundle: Any, config: Mapping[str, Any], pre: Mapping[str, Any]) -> Any:
    """load_graphs' ``make`` for a Whisper bundle."""
    from modelport.backends.seq2seq_logits import GenerationRules

    def make(encoder: Session, decoder: Session) -> WhisperSession:
        return WhisperSession(encoder, decoder, GenerationRules.from_dict(dict(config)), config,
                              pre["audio"], bundle.path / pre["tokenizer"],
                              int(pre.get("max_target_positions") or 448))

    return make


def time_whisper(session: WhisperSession, features: np.ndarray, *, new_tokens: int = 20,
                 runs: int = 3) -> dict[str, float]:
    """Greedy decoding of one 30 s window, timed: the encoder graph alone, the encoder +
    prompt steps (= time to the first token), ms per decoder step p50/p99, generated tokens/s;
    medians of ``runs`` after a warm-up run (eos may end a run early: the steps it took are
    what is timed)."""
    first: list[float] = []
    steps: list[float] = []
    tokens, total = 0, 0.0
    for run in range(runs + 1):
        t0 = time.perf_counter()
        out = session.generate_features(features, max_new_tokens=new_tokens, num_beams=1)
        spent = time.perf_counter() - t0
        if run == 0:
            continue  # warm-up
        first.append(session.timings["encoder_s"])
        steps += session.timings["steps_s"]
        tokens, total = tokens + out.shape[1] - session.prompt_length, total + spent
    encoder = []
    for _ in range(runs):  # the encoder graph alone (the warm-up above ran it)
        t0 = time.perf_counter()
        session._call(session.encoder, {"input_features": features})
        encoder.append(time.perf_counter() - t0)
    ms = np.asarray(steps) * 1e3 if steps else np.zeros(1)
    ttft = 1e3 * float(np.median(first))
    return {"encoder_ms": 1e3 * float(np.median(encoder)), "ttft_ms": ttft,
            "decode_ms_p50": float(np.percentile(ms, 50)),
            "decode_ms_p99": float(np.percentile(ms, 99)), "tokens_per_s": tokens / total}
