"""automatic-speech-recognition with a CTC graph (wav2vec2-CTC, HuBERT-CTC): audio files ->
transcripts by greedy CTC decoding (``modelport.tasks.ctc``) with the folder's vocabulary.
Each clip runs at its own length. Fidelity: word error rate of the transcripts against the
torch reference's (``modelport.tasks.wer``); the budget counts its increase in points
(``--max-accuracy-drop 0.05``: WER vs torch at most 5 points)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.tasks.audio_classification import audio_rows, clip_names
from modelport.tasks.base import Answer, RunInputs, Task, preprocessing
from modelport.tasks.classify_answer import logits_of


@dataclass
class Transcripts(Answer):
    task: str
    inputs: list[str]
    texts: list[str]
    outputs: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = []
        for source, text in zip(self.inputs, self.texts, strict=True):
            out.extend([source, f"  {text}"])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task,
                "predictions": [{"input": s, "text": t}
                                for s, t in zip(self.inputs, self.texts, strict=True)],
                "outputs": {k: [np.asarray(a).tolist() for a in v]
                            for k, v in self.outputs.items()}}


def wer_metric(outputs: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray],
               feeds: Any, pre: Mapping[str, Any]) -> dict[str, float]:
    """WER of the candidate's greedy transcripts vs the reference's, as accuracy points.
    Nothing without the vocabulary (a caller that passes no preprocessing): cosine judges."""
    from modelport.tasks.ctc import transcribe
    from modelport.tasks.wer import word_error_rate

    ctc = pre.get("ctc")
    if not ctc:
        return {}
    got = transcribe(logits_of(dict(outputs)), ctc)
    ref = transcribe(logits_of(dict(reference)), ctc)
    wer = word_error_rate(ref, got)
    return {"wer": wer, "accuracy": 1.0 - wer, "reference_accuracy": 1.0, "accuracy_drop": wer}


class SpeechRecognition(Task):
    name = "automatic-speech-recognition"
    fidelity = "automatic-speech-recognition"
    inputs = ("audio",)
    metric_name = "wer"
    metric = staticmethod(wer_metric)

    def check_more(self, bundle: Any, given: RunInputs) -> None:
        from modelport.tasks.whisper_asr import check_whisper, is_whisper_bundle

        if is_whisper_bundle(preprocessing(bundle)):
            check_whisper(given)
        elif given.language is not None or given.speech_task is not None:
            from modelport.errors import UsageError

            raise UsageError(f"--language/--task apply to Whisper bundles; {bundle.path} is a "
                             "CTC model (it transcribes the language it was trained on)")

    def predict(self, bundle: Any, session: Any, given: RunInputs) -> Answer:
        if given.feeds is not None:
            return super().predict(bundle, session, given)
        from modelport.tasks.whisper_asr import is_whisper_bundle, transcribe_whisper

        if is_whisper_bundle(preprocessing(bundle)):  # encoder-decoder: generate
            return Transcripts(self.name, *transcribe_whisper(session, given))
        from modelport.errors import UsageError
        from modelport.tasks.ctc import transcribe

        ctc = preprocessing(bundle).get("ctc")
        if not ctc:
            raise UsageError(f"{bundle.path} has no CTC vocabulary in its manifest: use --input")
        clips = list(given.audio or [])
        rows = audio_rows(bundle, session, clips)
        texts = [transcribe(logits_of(r), ctc)[0] for r in rows]
        outputs = {k: [r[k] for r in rows] for k in rows[0]}
        return Transcripts(self.name, clip_names(clips), texts, outputs)
