"""Whisper's decoder prompt from the bundle's generation config, as transformers'
``WhisperGenerationMixin._retrieve_init_tokens`` builds it (no torch, no transformers):

start token, then the language token (``--language``; else the config's forced one; else, on a
multilingual model, detected per input from the first step's logits over the language
tokens), then the task token (``--task transcribe|translate``; else the config's forced one;
``transcribe`` when only a language is given), then ``<|notimestamps|>``. An English-only model
(``is_multilingual`` false) takes neither flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelport.errors import UsageError

#: a language token to be detected from the first step's logits
DETECT = -1
TASKS = ("transcribe", "translate")


def language_id(config: Mapping[str, Any], language: str) -> int:
    """``en``, ``<|en|>`` or ``english`` -> the model's language token."""
    tokens = config.get("lang_to_id") or {}
    key = language.lower().strip()
    names = config.get("language_names") or {}
    code = names.get(key, key.strip("<|>"))
    token = f"<|{code}|>"
    if token not in tokens:
        known = ", ".join(sorted(t.strip("<|>") for t in tokens)[:20])
        raise UsageError(f"--language '{language}' is not one of this model's languages "
                         f"({known}{', ...' if len(tokens) > 20 else ''})")
    return int(tokens[token])


def prompt_tokens(config: Mapping[str, Any], language: str | None = None,
                  task: str | None = None) -> list[int]:
    """The prompt, with DETECT where the language is to be detected."""
    if config.get("is_multilingual") is False and (language or task):
        raise UsageError("this Whisper model is English-only: it takes no --language or "
                         "--task")
    if task is not None and task not in TASKS:
        raise UsageError(f"--task must be transcribe or translate, got '{task}'")
    if language and not config.get("lang_to_id"):
        raise UsageError("this model's generation config has no language tokens "
                         "(lang_to_id): it takes no --language")
    if task is not None and task not in (config.get("task_to_id") or {}):
        raise UsageError("this model's generation config has no task tokens (task_to_id): it "
                         "takes no --task")
    language = language if language is not None else config.get("language")
    task = task if task is not None else config.get("task")
    tokens: list[int | None] = [int(config["decoder_start_token_id"])]
    if task is None and language is None:
        forced = [list(f) for f in config.get("forced_decoder_ids") or []]
        step = 1
        while forced and forced[0][0] == step:
            tokens.append(forced.pop(0)[1])
            step += 1
    undefined = len(tokens) <= 1 or tokens[1] is None
    lang: int | None = None
    if language is not None:
        lang = language_id(config, language)
    elif config.get("lang_to_id") and undefined:
        lang = DETECT
    if lang is not None:
        if len(tokens) > 1:
            tokens[1] = lang
        else:
            tokens.append(lang)
    ids = config.get("task_to_id") or {}
    if task is not None:
        tokens.append(int(ids[task]))
    elif language is not None and ids and not any(t in tokens for t in ids.values()):
        tokens.append(int(ids["transcribe"]))
    no_ts = config.get("no_timestamps_token_id")
    if no_ts is not None and tokens[-1] != no_ts:
        tokens.append(int(no_ts))
    return [int(t) for t in tokens if t is not None]


def detect_languages(logits: np.ndarray, config: Mapping[str, Any]) -> np.ndarray:
    """The most likely language token per row of the first step's logits [batch, vocab]."""
    ids = np.asarray(sorted(int(v) for v in (config.get("lang_to_id") or {}).values()))
    return ids[logits[:, ids].argmax(-1)]
