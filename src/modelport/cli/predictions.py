"""What `modelport run` prints for a classifier bundle: labels with scores, per input (or per
word for token classification). numpy only, so a runtime-only install prints them too."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np


def print_predictions(bundle: Any, outputs: dict[str, np.ndarray],
                      args: argparse.Namespace) -> int:
    from modelport.tasks.postprocess import classify, label_words

    pre = bundle.manifest.get("preprocessing") or {}
    id2label, multi = pre.get("id2label"), bool(pre.get("multi_label"))
    logits = outputs.get("logits", next(iter(outputs.values())))
    sources = args.text or [str(p) for p in args.image]
    result: list[dict[str, Any]] = []
    if pre.get("task") == "token-classification":
        spans = bundle.tokenizer().word_spans(args.text)
        for text, row, (word_ids, offsets) in zip(args.text, logits, spans, strict=True):
            words = label_words(row, word_ids, offsets, text, id2label, multi_label=multi)
            print(f"{text!r}")
            width = max((len(w.word) for w in words), default=0)
            for w in words:
                print(f"  {w.word:<{width}}  {w.label:<12}  {w.score:.4f}")
            result.append({"input": text, "words": [vars(w) for w in words]})
    else:
        rows = classify(logits[: len(sources)], id2label, multi_label=multi, top_k=args.top_k)
        for source, scored in zip(sources, rows, strict=True):
            print(f"{source!r}" if args.text else source)
            width = max(len(s.label) for s in scored)
            for s in scored:
                print(f"  {s.label:<{width}}  {s.score:.4f}")
            result.append({"input": source, "labels": [vars(s) for s in scored]})
    if args.json:
        from modelport.io import write_json_atomic

        write_json_atomic(args.json, {"task": pre.get("task"), "predictions": result,
                                      "outputs": {k: v.tolist() for k, v in outputs.items()}})
    return 0
