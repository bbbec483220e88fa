"""Text for language models: each line is one sequence of token ids (no padding stored).

Perplexity is measured per line (``metrics_lm``), and data-aware weight compression feeds the
same lines; the sets are ordinary CalibrationSets (``input_ids`` [1, n] per sample, the line
kept in ``texts``) split by content hash like every other set.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modelport.calibration_data.dataset import CalibrationSet
from modelport.errors import CalibrationDataError

log = logging.getLogger("modelport")

EVAL_FRACTION = 0.4
MIN_TOKENS = 2  # a line needs a token to predict


def lines_to_set(lines: Sequence[str], tokenizer_json: Path, *, source: str,
                 max_tokens: int = 512) -> CalibrationSet:
    """Tokenize each line with the model's own tokenizer; lines under two tokens are dropped."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.no_padding()
    tok.no_truncation()
    samples, texts = [], []
    for line, enc in zip(lines, tok.encode_batch(list(lines)), strict=True):
        ids = enc.ids[:max_tokens]
        if len(ids) >= MIN_TOKENS:
            samples.append({"input_ids": np.asarray(ids, np.int64)[None]})
            texts.append(line)
    if not samples:
        raise CalibrationDataError(f"{source}: no line has {MIN_TOKENS} or more tokens")
    return CalibrationSet(samples, texts=texts, source=source)


def load_lines(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise CalibrationDataError(f"text file '{path}' not found (one sequence a line)")
    return [s.strip() for s in path.read_text("utf-8").splitlines() if s.strip()]


def lm_default_data(tokenizer_json: Path) -> tuple[CalibrationSet, CalibrationSet]:
    """The shipped CC0 sentences, split by content hash into calibration and evaluation."""
    from modelport.models.data import SENTENCES, sentences

    full = lines_to_set(sentences(), tokenizer_json, source=f"builtin sentences "
                                                             f"({SENTENCES.name})")
    return full.split(EVAL_FRACTION)


def plan_lm_data(tokenizer_json: Path, default_data, calib, evalset, *, max_tokens: int
                 ) -> tuple[CalibrationSet, CalibrationSet]:
    """(calibration, evaluation) lines: given files (one sequence a line) or sets, else the
    model's own default (the shipped sentences)."""
    def load(src):
        if src is None or isinstance(src, CalibrationSet):
            return src
        return lines_to_set(load_lines(src), tokenizer_json, source=str(src),
                            max_tokens=max_tokens)

    calib_set, eval_set = load(calib), load(evalset)
    if calib_set is not None and eval_set is None:
        calib_set, eval_set = calib_set.split(0.3)
    elif calib_set is None:
        default_calib, default_eval = default_data()
        calib_set, eval_set = default_calib, eval_set or default_eval
    return calib_set, eval_set
