"""More distillation inputs from the same sentences: the teacher labels whatever we feed it.

Distillation needs inputs, not labels, so a few hundred sentences can become thousands of
training rows: spans cut out of a sentence, two sentences joined, words dropped, words swapped
for words from other sentences (the spirit of TinyBERT's augmentation, without a second model).
On builtin:minilm's 490 calibration sentences the 3-block student stops improving after ~20
epochs of the originals; see bench/RESULTS.md for what the augmented rows buy.
"""

from __future__ import annotations

import random


def augment_texts(texts: list[str], n: int, *, seed: int = 0) -> list[str]:
    """``n`` new rows made from ``texts`` (deterministic for a seed), originals not included."""
    rng = random.Random(seed)
    sentences = [t.split() for t in texts if t.split()]
    if not sentences or n <= 0:
        return []
    vocab = [w for words in sentences for w in words]
    out: list[str] = []
    while len(out) < n:
        words = list(rng.choice(sentences))
        kind = rng.randrange(4)
        if kind == 0:  # two sentences as one input
            words += rng.choice(sentences)
        elif kind == 1 and len(words) > 4:  # a span of at least 3 words
            start = rng.randrange(0, len(words) - 3)
            words = words[start : rng.randrange(start + 3, len(words) + 1)]
        elif kind == 2:  # word dropout
            words = [w for w in words if rng.random() > 0.15] or words
        else:  # words replaced by words from the other sentences
            words = [rng.choice(vocab) if rng.random() < 0.2 else w for w in words]
        out.append(" ".join(words))
    return out
