"""feature-extraction: sentences -> hidden states, or a sentence-transformers folder's pooled
and normalized sentence embedding; `run` prints the raw vectors. Fidelity: cosine."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.tasks.base import RunInputs, Task, image_feeds, preprocessing, text_feeds


class FeatureExtraction(Task):
    name = "feature-extraction"
    fidelity = "embedding"
    inputs = ("text",)

    def accepts(self, bundle: Any) -> tuple[str, ...]:
        # an image backbone exported for its features takes pixels
        return ("image", "input") if preprocessing(bundle).get("image") else ("text", "input")

    def encode(self, bundle: Any, given: RunInputs) -> tuple[dict[str, np.ndarray], Any]:
        if given.image is not None:
            return image_feeds(bundle, given.image), None
        return text_feeds(bundle, given.text or []), None
