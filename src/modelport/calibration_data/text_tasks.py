"""Calibration/evaluation data of the text heads beyond classification, from the user's files
or modelport's sentences, tokenized with the model's own tokenizer.json:

- question answering: a JSONL file, one ``{"question": ..., "context": ...}`` a line; every
  window of a long context (the same windows `run` reads) is one sample;
- fill-mask: a text file, one example a line; a line that holds the model's mask token keeps
  its masks, any other line gets 15% of its tokens (at least one; special tokens never)
  replaced by the mask token, at positions drawn from a seed made of the line's text, so the
  same file always gives the same samples.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.calibration_data.dataset import CalibrationSet
from modelport.errors import CalibrationDataError
from modelport.specs import TensorSpec

MASK_FRACTION = 0.15


def load_text_task(path: Path, pre: Mapping[str, Any], tokenizer_json: Path,
                   specs: Mapping[str, TensorSpec]) -> CalibrationSet:
    """The user's --calib/--eval file for a question-answering or fill-mask model."""
    if pre.get("task") == "question-answering":
        return qa_set(read_pairs(path), tokenizer_json, pre, specs, source=str(path))
    lines = [line.strip() for line in _lines(path) if line.strip()]
    if not lines:
        raise CalibrationDataError(f"'{path}' has no non-blank lines")
    return masked_set(lines, tokenizer_json, pre, specs, source=str(path))


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(question, context) pairs from a JSONL file; a bad line is a one-line error."""
    pairs = []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise CalibrationDataError(f"'{path}' line {number} is not JSON ({exc}); question "
                                       "answering data is one {\"question\", \"context\"} object "
                                       "a line") from None
        if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) and item[k].strip() for k in ("question", "context")):
            raise CalibrationDataError(f"'{path}' line {number}: give an object with non-empty "
                                       "\"question\" and \"context\" strings")
        pairs.append((item["question"], item["context"]))
    if not pairs:
        raise CalibrationDataError(f"'{path}' has no question/context lines")
    return pairs


def qa_set(pairs: Sequence[tuple[str, str]], tokenizer_json: Path, pre: Mapping[str, Any],
           specs: Mapping[str, TensorSpec], *, source: str) -> CalibrationSet:
    """Every window of every pair, padded to one length (one sample each)."""
    from modelport.calibration_data.text import pad_id
    from modelport.tasks.qa_spans import encode_windows, pair_tokenizer, window_feeds, window_params

    params = {**window_params(int(pre.get("max_length", 384))),
              **(pre.get("question_answering") or {})}
    tok = pair_tokenizer(tokenizer_json, params)
    windows = encode_windows(tok, pairs)
    feeds = window_feeds(windows, list(specs), pad_id(tok), {n: s.dtype for n, s in specs.items()})
    return _rows(feeds, source)


def masked_set(texts: Sequence[str], tokenizer_json: Path, pre: Mapping[str, Any],
               specs: Mapping[str, TensorSpec], *, source: str) -> CalibrationSet:
    """The lines tokenized, each with its own masks or MASK_FRACTION of its tokens masked."""
    from modelport.calibration_data.text import TextTokenizer

    tokenizer = TextTokenizer(tokenizer_json, max_length=int(pre.get("max_length", 128)))
    feeds = tokenizer.encode(list(texts), specs)
    mask_id = int(pre["mask_token_id"])
    specials = _special_ids(tokenizer_json)
    ids = feeds["input_ids"]
    attended = feeds["attention_mask"] == 1 if "attention_mask" in feeds else ids != tokenizer.pad_id
    for row, text in enumerate(texts):
        if (ids[row] == mask_id).any():
            continue
        candidates = np.flatnonzero(attended[row] & ~np.isin(ids[row], specials))
        if not len(candidates):
            continue
        rng = np.random.default_rng(zlib.crc32(text.encode("utf-8")))
        count = max(1, round(MASK_FRACTION * len(candidates)))
        ids[row, rng.choice(candidates, size=count, replace=False)] = mask_id
    return _rows(feeds, source)


def _lines(path: Path) -> list[str]:
    try:
        raw = Path(path).read_bytes()
        return raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CalibrationDataError(f"'{path}' is not valid UTF-8 (line {line}); re-save it as "
                                   "UTF-8") from None


def _special_ids(tokenizer_json: Path) -> list[int]:
    data = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    return [int(t["id"]) for t in data.get("added_tokens") or [] if t.get("special")]


def _rows(feeds: Mapping[str, np.ndarray], source: str) -> CalibrationSet:
    n = len(next(iter(feeds.values())))
    return CalibrationSet([{k: v[i : i + 1] for k, v in feeds.items()} for i in range(n)],
                          source=source)
