"""image-classification: image files -> labels with scores (the bundle's resize/normalize).
Fidelity: top-1 agreement (accuracy when the data has labels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelport.tasks.base import Answer, RunInputs, Task, image_feeds
from modelport.tasks.text_classification import labels_answer


class ImageClassification(Task):
    name = "image-classification"
    fidelity = "classification"
    inputs = ("image",)

    def encode(self, bundle: Any, given: RunInputs) -> tuple[dict[str, np.ndarray], Any]:
        return image_feeds(bundle, given.image or []), None

    def decode(self, bundle: Any, outputs: dict[str, np.ndarray], given: RunInputs,
               state: Any) -> Answer:
        sources = [str(p) if isinstance(p, (str, Path)) else f"image {i}"
                   for i, p in enumerate(given.image or [])]
        return labels_answer(self.name, bundle, outputs, sources, given.top_k, quoted=False)
