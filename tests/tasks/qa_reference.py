"""The reference a QA bundle's answer is checked against: transformers' own tokenizer (its
overflowing windows and offsets), the torch model, and the span selection of transformers'
question-answering pipeline (v4.x `select_starts_ends` / `decode_spans` / `get_indices`,
copied here: transformers 5 removed that pipeline; pipeline("question-answering") now raises)."""

from __future__ import annotations

import numpy as np


def _decode_spans(start, end, topk, max_answer_len, undesired_tokens):
    if start.ndim == 1:
        start = start[None]
    if end.ndim == 1:
        end = end[None]
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
    scores_flat = candidates.flatten()
    idx_sort = [np.argmax(scores_flat)]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    desired = np.isin(starts, undesired_tokens.nonzero()) & np.isin(ends, undesired_tokens.nonzero())
    starts, ends = starts[desired], ends[desired]
    return starts, ends, candidates[0, starts, ends]


def _select_starts_ends(start, end, p_mask, attention_mask, max_answer_len):
    undesired_tokens = np.abs(np.array(p_mask) - 1)
    undesired_tokens = undesired_tokens & attention_mask
    undesired_tokens_mask = undesired_tokens == 0.0
    start = np.where(undesired_tokens_mask, -10000.0, start)
    end = np.where(undesired_tokens_mask, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    start[0, 0] = end[0, 0] = 0.0
    return _decode_spans(start, end, 1, max_answer_len, undesired_tokens)


def windows(folder, question: str, context: str, params: dict):
    """transformers' tokenizer on (question, context): its windows as tensors, and encodings."""
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    enc = tok(question, context, truncation="only_second", max_length=params["max_length"],
              stride=params["stride"], return_overflowing_tokens=True,
              return_offsets_mapping=True, padding="longest", return_tensors="pt")
    return tok, enc


def model_outputs(folder, feeds: dict):
    import torch
    import transformers

    model = transformers.AutoModelForQuestionAnswering.from_pretrained(
        str(folder), local_files_only=True).eval()
    with torch.no_grad():
        out = model(**feeds)
    return out.start_logits.numpy(), out.end_logits.numpy()


def graph_feeds(enc, input_names) -> dict:
    return {k: enc[k] for k in input_names}


def pipeline_answer(folder, question: str, context: str, params: dict) -> dict:
    """What transformers' (v4) question-answering pipeline answers, top_k=1."""
    tok, enc = windows(folder, question, context, params)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc
             and n in tok.model_input_names]
    starts, ends = model_outputs(folder, graph_feeds(enc, names))
    answers = []
    for i in range(len(enc["input_ids"])):
        ids = enc["input_ids"][i].numpy()
        p_mask = np.array([s != 1 for s in enc.sequence_ids(i)])
        p_mask[ids == tok.cls_token_id] = False
        attention = enc["attention_mask"][i].numpy()
        s, e, score = _select_starts_ends(starts[i][None], ends[i][None], p_mask.astype(int),
                                          attention, params["max_answer_len"])
        encoding = enc.encodings[i]
        for s_, e_, sc in zip(s, e, score, strict=True):
            try:
                w0, w1 = encoding.token_to_word(s_), encoding.token_to_word(e_)
                c0 = encoding.word_to_chars(w0, sequence_index=1)[0]
                c1 = encoding.word_to_chars(w1, sequence_index=1)[1]
            except Exception:  # noqa: BLE001 - as the pipeline: keep to offsets then
                c0, c1 = encoding.offsets[s_][0], encoding.offsets[e_][1]
            answers.append({"score": float(sc), "start": c0, "end": c1,
                            "answer": context[c0:c1]})
    return max(answers, key=lambda a: a["score"]), len(enc["input_ids"])
