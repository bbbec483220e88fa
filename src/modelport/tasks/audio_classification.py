"""audio-classification (wav2vec2/HuBERT sequence classifiers, AST): audio files -> labels
with scores. Each clip runs at its own length (no padding: what transformers' pipeline does).
Fidelity: top-1 agreement with the torch reference; the budget counts its points
(``--max-accuracy-drop 0.01``: at least 99% of evaluation clips keep torch's top label)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.tasks.base import Answer, RunInputs, Task, as_points, preprocessing
from modelport.tasks.classify_answer import Labels, logits_of
from modelport.tasks.postprocess import classify


def audio_rows(bundle: Any, session: Any, clips: list[Any]) -> list[dict[str, np.ndarray]]:
    """Each clip (a file path, or mono samples at the model's rate) -> the session's outputs."""
    from modelport.errors import UsageError
    from modelport.shapes import fit_arrays
    from modelport.tasks.audio import features, load_input_values

    params = preprocessing(bundle).get("audio")
    if not params:
        raise UsageError(f"{bundle.path} is not an audio model: use --text, --image or --input")
    name = bundle.inputs[0].name
    rows = []
    for clip in clips:
        if isinstance(clip, np.ndarray):
            if clip.ndim != 1 or clip.size == 0:
                raise UsageError(f"audio arrays are mono samples at {params['sampling_rate']} "
                                 f"Hz (one axis, not empty); got shape {list(clip.shape)}")
            values = features(clip, params)
        else:
            values = load_input_values(clip, params)
        rows.append(session.infer(fit_arrays({name: values}, bundle.inputs)))
    return rows


def clip_names(clips: list[Any]) -> list[str]:
    return [str(c) if isinstance(c, (str, Path)) else f"audio {i}" for i, c in enumerate(clips)]


def top1_agreement(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
                   feeds: Any, pre: Mapping[str, Any]) -> dict[str, float]:
    """Share of clips whose top label is torch's, as accuracy points (reference: 1.0)."""
    got, ref = logits_of(dict(outputs)), logits_of(dict(reference))
    agreement = float((np.asarray(got).argmax(-1) == np.asarray(ref).argmax(-1)).mean())
    return as_points(agreement, top1_agreement=agreement)


class AudioClassification(Task):
    name = "audio-classification"
    fidelity = "audio-classification"
    inputs = ("audio",)
    metric_name = "top1_agreement"
    metric = staticmethod(top1_agreement)

    def predict(self, bundle: Any, session: Any, given: RunInputs) -> Answer:
        if given.feeds is not None:
            return super().predict(bundle, session, given)
        clips = list(given.audio or [])
        rows = audio_rows(bundle, session, clips)
        outputs = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
        pre = preprocessing(bundle)
        labels = classify(logits_of(outputs), pre.get("id2label"),
                          multi_label=bool(pre.get("multi_label")), top_k=given.top_k)
        return Labels(self.name, clip_names(clips), labels, outputs, quoted=False)
