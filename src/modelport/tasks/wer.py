"""Word error rate: the fidelity metric of automatic-speech-recognition (CTC or seq2seq).

WER = (substitutions + deletions + insertions) / reference words, by a word-level Levenshtein
alignment, pooled over a corpus (total edits / total reference words, as jiwer computes it). A
transcript is split on whitespace; tokens may also be given as sequences of any hashable items
(CTC words as tuples of token ids). An empty reference scores 0 against an empty hypothesis and
1 per inserted word otherwise (the edits over max(1, reference words)). numpy-free, torch-free.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def edit_distance(reference: Sequence[Hashable], hypothesis: Sequence[Hashable]) -> int:
    """Levenshtein distance between two word sequences (unit cost substitute/insert/delete)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1,
                             previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1]


def _words(text: str | Sequence[Hashable]) -> Sequence[Hashable]:
    return text.split() if isinstance(text, str) else text


def word_error_rate(references: Sequence[str | Sequence[Hashable]],
                    hypotheses: Sequence[str | Sequence[Hashable]]) -> float:
    """Corpus WER as a fraction (0.05 = 5 points): total word edits / total reference words."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references for {len(hypotheses)} hypotheses")
    edits = words = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        ref_words, hyp_words = _words(ref), _words(hyp)
        edits += edit_distance(ref_words, hyp_words)
        words += len(ref_words)
    return edits / max(1, words)
