"""chrF (character n-gram F-score, Popović 2015), the fidelity metric of text2text-generation:
each target's outputs against the torch reference's outputs, numpy-free and torch-free.

Corpus level, as sacrebleu computes it by default: character n-grams of orders 1-6 with
whitespace removed, matches / hypothesis / reference counts summed over all sentences, the
precision and recall averaged over the orders, then F-beta with beta = 2. 100 = identical.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

ORDER = 6
BETA = 2.0


def _ngrams(text: str, n: int) -> Counter[str]:
    chars = "".join(text.split())
    return Counter(chars[i:i + n] for i in range(len(chars) - n + 1))


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF in [0, 100] of ``hypotheses`` against ``references`` (paired)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if list(hypotheses) == list(references):
        return 100.0
    precisions, recalls = [], []
    for n in range(1, ORDER + 1):
        match = hyp = ref = 0
        for h, r in zip(hypotheses, references, strict=True):
            hc, rc = _ngrams(h, n), _ngrams(r, n)
            match += sum((hc & rc).values())
            hyp += sum(hc.values())
            ref += sum(rc.values())
        if hyp == 0 and ref == 0:
            continue
        precisions.append(match / hyp if hyp else 0.0)
        recalls.append(match / ref if ref else 0.0)
    if not precisions:
        return 100.0
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    if p + r == 0:
        return 0.0
    b2 = BETA * BETA
    return 100.0 * (1 + b2) * p * r / (b2 * p + r)
