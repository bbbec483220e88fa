"""zero-shot-image-classification (CLIP, SigLIP): `run --image x.png --labels "a cat,a dog"`
-> a score per label, as transformers' ZeroShotImageClassificationPipeline gives them: each
label put in the prompt template ("This is a photo of {}."), tokenized with the bundle's own
tokenizer (SigLIP: padded to 64 tokens), both towers run in one graph, and the image's
``logits_per_image`` turned into scores by the model's rule (CLIP: softmax over the labels,
SigLIP: a sigmoid per label). Fidelity: top-1 agreement of each evaluation image over the
evaluation texts, and the cosine of both towers' embeddings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import UsageError
from modelport.tasks.base import Answer, RunInputs, Task, as_points, preprocessing

IMAGE_INPUT = "pixel_values"


@dataclass
class LabelScores(Answer):
    inputs: list[str]
    #: per image, (label, score) from the best score down
    scores: list[list[tuple[str, float]]]
    rule: str

    def lines(self) -> list[str]:
        out = []
        for source, ranked in zip(self.inputs, self.scores, strict=True):
            out.append(f"{source} ({self.rule} over {len(ranked)} label(s)):")
            width = max(len(label) for label, _ in ranked)
            out.extend(f"  {label:<{width}}  {score:.4f}" for label, score in ranked)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"task": "zero-shot-image-classification", "score": self.rule, "predictions": [
            {"input": source, "scores": [{"label": label, "score": score}
                                         for label, score in ranked]}
            for source, ranked in zip(self.inputs, self.scores, strict=True)]}


def label_scores(logits: np.ndarray, rule: str) -> np.ndarray:
    """[images, labels] logits -> scores: softmax over the labels, or a sigmoid per label."""
    logits = np.asarray(logits, dtype=np.float64)
    if rule == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def zero_shot_metric(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                     feeds: Mapping[str, np.ndarray] | None,
                     pre: Mapping[str, Any]) -> dict[str, float]:
    """Top-1 agreement of every evaluation image over every evaluation text (the embeddings'
    similarities: a positive scale and a shared bias do not move an argmax), and the worse
    mean cosine of the image and the text embeddings."""
    from modelport.metrics import row_cosines

    got_img, ref_img = np.asarray(outputs["image_embeds"]), np.asarray(reference["image_embeds"])
    got_txt, ref_txt = np.asarray(outputs["text_embeds"]), np.asarray(reference["text_embeds"])
    got_top = (got_img @ got_txt.T).argmax(-1)
    ref_top = (ref_img @ ref_txt.T).argmax(-1)
    top1 = float((got_top == ref_top).mean()) if len(ref_top) else 1.0
    cosine = min(float(row_cosines(got_img, ref_img).mean()),
                 float(row_cosines(got_txt, ref_txt).mean()))
    return as_points(top1, zero_shot_top1_agreement=top1, embedding_cosine=cosine,
                     zero_shot_images=len(ref_top), zero_shot_texts=len(ref_txt))


class ZeroShotImageClassification(Task):
    name = "zero-shot-image-classification"
    fidelity = "zero-shot-image-classification"
    inputs = ("image",)
    options = ("labels",)
    metric_name = "zero_shot_top1_agreement"
    metric = staticmethod(zero_shot_metric)

    def check_more(self, bundle: Any, given: RunInputs) -> None:
        if given.labels is None:
            raise UsageError(f"{bundle.path} (zero-shot-image-classification bundle) scores "
                             "an image against labels you give: add --labels \"a cat,a dog\"")
        if not [label for label in given.labels if label.strip()]:
            raise UsageError("--labels is empty: give the candidate labels, comma-separated "
                             "(--labels \"a cat,a dog\")")
        if not preprocessing(bundle).get("zero_shot") or bundle.tokenizer() is None:
            raise UsageError(f"{bundle.path} has no zero-shot preprocessing or tokenizer in "
                             "its manifest: use --input FEEDS.npz")

    def encode(self, bundle: Any, given: RunInputs) -> tuple[dict[str, np.ndarray], Any]:
        from modelport.calibration_data.zero_shot import prompt_tokenizer
        from modelport.shapes import fit_arrays
        from modelport.tasks.image import load_pixels, pixels_of_array

        pre = preprocessing(bundle)
        params, zero_shot = pre["image"], pre["zero_shot"]
        images = list(given.image or [])
        pixels = np.concatenate([pixels_of_array(im, params) if isinstance(im, np.ndarray)
                                 else load_pixels(im, params) for im in images])
        labels = [label.strip() for label in given.labels or [] if label.strip()]
        prompts = [str(zero_shot.get("template") or "{}").format(label) for label in labels]
        text_specs = {s.name: s for s in bundle.inputs if s.name != IMAGE_INPUT}
        feeds = prompt_tokenizer(bundle.tokenizer(), zero_shot).encode(
            prompts, text_specs, pad_to=zero_shot.get("pad_to"))
        feeds[IMAGE_INPUT] = pixels
        names = [str(p) if isinstance(p, (str, Path)) else f"image {i}"
                 for i, p in enumerate(images)]
        return fit_arrays(feeds, bundle.inputs), (names, labels)

    def decode(self, bundle: Any, outputs: dict[str, np.ndarray], given: RunInputs,
               state: Any) -> Answer:
        names, labels = state
        rule = str(preprocessing(bundle)["zero_shot"].get("score", "softmax"))
        scores = label_scores(outputs["logits_per_image"], rule)
        ranked = [sorted(zip(labels, (float(s) for s in row), strict=True),
                         key=lambda pair: -pair[1]) for row in scores]
        return LabelScores(names, ranked, rule)
