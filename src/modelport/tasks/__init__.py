"""What a task means on a device: the task names, and the torch-free pre/postprocessing that
`modelport run`, ``Session.predict`` and the server apply from a bundle's manifest (numpy,
tokenizers and Pillow only).

One module per task (``tasks/<task>.py``, a ``modelport.tasks.base.Task`` subclass), named in
the one registry below and imported only when used. A task decides the graph's inputs/outputs,
the fidelity metric and what `run` prints; the torch side (loading a Hugging Face folder for a
task) lives in ``modelport.models.hf``.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelport.tasks.base import Task, TaskMetric

#: task name -> ("module:Class", fidelity kind). The fidelity kind is PreparedModel.task:
#: classifiers compare top-1 labels, embeddings cosines, LMs perplexity; a task with a metric
#: of its own (Task.metric) uses its own name. One line per task, in the order `--help` lists.
REGISTRY: dict[str, tuple[str, str]] = {
    "feature-extraction": ("modelport.tasks.feature_extraction:FeatureExtraction", "embedding"),
    "text-classification": ("modelport.tasks.text_classification:TextClassification",
                            "classification"),
    "token-classification": ("modelport.tasks.token_classification:TokenClassification",
                             "classification"),
    "image-classification": ("modelport.tasks.image_classification:ImageClassification",
                             "classification"),
    "object-detection": ("modelport.tasks.object_detection:ObjectDetection", "object-detection"),
    "image-segmentation": ("modelport.tasks.image_segmentation:ImageSegmentation",
                           "image-segmentation"),
    "text-generation": ("modelport.tasks.text_generation:TextGeneration", "text-generation"),
    "question-answering": ("modelport.tasks.question_answering:QuestionAnswering",
                           "question-answering"),
    "fill-mask": ("modelport.tasks.fill_mask:FillMask", "fill-mask"),
    "zero-shot-image-classification": ("modelport.tasks.zero_shot:ZeroShotImageClassification",
                                       "zero-shot-image-classification"),
    "audio-classification": ("modelport.tasks.audio_classification:AudioClassification",
                             "audio-classification"),
    "automatic-speech-recognition": ("modelport.tasks.speech_recognition:SpeechRecognition",
                                     "automatic-speech-recognition"),
    "text2text-generation": ("modelport.tasks.text2text:Text2Text", "text2text-generation"),
}

#: tasks a Hugging Face checkpoint folder can be exported for
TASKS: tuple[str, ...] = tuple(REGISTRY)

#: the fidelity kind (PreparedModel.task) of each task
FIDELITY_KIND: dict[str, str] = {name: kind for name, (_, kind) in REGISTRY.items()}

TEXT_TASKS = frozenset({"feature-extraction", "text-classification", "token-classification"})

#: the task of a bundle whose manifest names none (a built-in, a file.py:factory, an .onnx)
GENERIC = "modelport.tasks.generic:Generic"


@cache
def _load(ref: str) -> Task:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)()


def get_task(name: str | None) -> Task:
    """The Task object of ``name`` (the generic one for None or a name this version lacks)."""
    entry = REGISTRY.get(name) if name else None
    return _load(entry[0] if entry else GENERIC)


def task_of(bundle: Any) -> Task:
    """The task a bundle was exported for (its manifest's ``preprocessing.task``)."""
    return get_task((bundle.manifest.get("preprocessing") or {}).get("task"))


def metric_for(kind: str | None) -> TaskMetric | None:
    """The task's own fidelity metric for a fidelity kind that names a task, else None."""
    if kind not in REGISTRY or FIDELITY_KIND[kind] != kind:
        return None
    return get_task(kind).metric
