"""Which task a checkpoint folder is exported for: ``--task``, else read from the folder.

A sentence-transformers ``modules.json`` means feature-extraction (with its pooling); else the
class named in ``config.json`` ``architectures`` decides (``*ForSequenceClassification`` ->
text-classification, ``BertModel`` -> feature-extraction, ...).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from modelport.errors import ModelLoadError
from modelport.models.hf.folder import Folder
from modelport.tasks import FIDELITY_KIND, TASKS

#: architecture class suffix -> task (the first match wins, so longer suffixes come first)
SUFFIX_TASKS: tuple[tuple[str, str], ...] = (
    ("ForImageClassificationWithTeacher", "image-classification"),
    ("ForImageClassification", "image-classification"),
    ("ForObjectDetection", "object-detection"),  # DETR, YOLOS, RT-DETR, ...
    ("ForSemanticSegmentation", "image-segmentation"),  # SegFormer, DPT, UperNet, ...
    ("ForAudioClassification", "audio-classification"),  # AST
    ("ForCTC", "automatic-speech-recognition"),  # Wav2Vec2ForCTC, HubertForCTC
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),  # GPT2LMHeadModel, GPTJ...
    ("Model", "feature-extraction"),
    ("Encoder", "feature-extraction"),
)

#: the transformers Auto class that loads each task's head
AUTO_CLASSES: dict[str, str] = {
    "feature-extraction": "AutoModel",
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "image-classification": "AutoModelForImageClassification",
    "object-detection": "AutoModelForObjectDetection",
    "image-segmentation": "AutoModelForSemanticSegmentation",
    "text-generation": "AutoModelForCausalLM",
    "question-answering": "AutoModelForQuestionAnswering",
    "fill-mask": "AutoModelForMaskedLM",
    "audio-classification": "AutoModelForAudioClassification",
    "automatic-speech-recognition": "AutoModelForCTC",
    "text2text-generation": "AutoModelForSeq2SeqLM",
    "zero-shot-image-classification": "AutoModelForZeroShotImageClassification",
}

#: image-text dual encoders exported for zero-shot-image-classification (both towers in one
#: graph: models.hf.zero_shot_plan); checked before the generic ``Model`` suffix
ZERO_SHOT_ARCHITECTURES = ("CLIPModel", "SiglipModel")
ZERO_SHOT_MODEL_TYPES = ("clip", "siglip")

#: encoder-decoder text families exported for text2text-generation (models.hf.seq2seq):
#: their ``*ForConditionalGeneration``, ``MarianMTModel`` and bare ``T5Model``/``BartModel``
#: classes, checked before the generic ``Model`` suffix
SEQ2SEQ_MODEL_TYPES = ("t5", "mt5", "umt5", "longt5", "bart", "mbart", "marian", "pegasus",
                       "m2m_100", "nllb-moe", "blenderbot", "blenderbot-small", "plbart", "led")

#: encoder-decoder speech families exported for automatic-speech-recognition with their
#: generating decoder (models.hf.whisper_plan), loaded with this Auto class
SPEECH_SEQ2SEQ_MODEL_TYPES = ("whisper",)
SPEECH_SEQ2SEQ_AUTO = "AutoModelForSpeechSeq2Seq"

FALLBACK = ("or export it from Python with a file.py:factory that returns "
            "(model, example_inputs)")


@dataclass(frozen=True)
class TaskChoice:
    task: str  # one of TASKS
    modality: str  # "text" | "image" | "audio"
    how: str  # why this task: "--task", "modules.json", "architectures: BertModel", ...
    auto: str = ""  # the Auto class when not the task's own (Whisper: SPEECH_SEQ2SEQ_AUTO)

    @property
    def fidelity_kind(self) -> str:
        return FIDELITY_KIND[self.task]

    @property
    def auto_class(self) -> str:
        return self.auto or AUTO_CLASSES[self.task]


def choose_task(folder: Folder, task: str | None) -> TaskChoice:
    """The task to export for, with the modality its inputs have; one-line error if none."""
    if task is not None:
        if task not in TASKS:
            close = difflib.get_close_matches(task, TASKS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ModelLoadError(
                f"unknown --task '{task}'{hint}; supported: {', '.join(TASKS)}, {FALLBACK}"
            )
        if task == "automatic-speech-recognition" and \
                folder.model_type in SPEECH_SEQ2SEQ_MODEL_TYPES:
            return TaskChoice(task, "audio", "--task", SPEECH_SEQ2SEQ_AUTO)
        return TaskChoice(task, modality(folder, task), "--task")
    if folder.modules and any("sentence_transformers" in str(m.get("type", ""))
                              for m in folder.modules):
        return TaskChoice("feature-extraction", "text", "sentence-transformers modules.json")
    for arch in folder.architectures:
        if arch in ZERO_SHOT_ARCHITECTURES or (
                arch.endswith("Model") and folder.model_type in ZERO_SHOT_MODEL_TYPES):
            task = "zero-shot-image-classification"
            return TaskChoice(task, modality(folder, task), f"architectures: {arch}")
        if folder.model_type in SEQ2SEQ_MODEL_TYPES and arch.endswith(
                ("ForConditionalGeneration", "MTModel", "Model")):
            return TaskChoice("text2text-generation", "text", f"architectures: {arch}")
        if folder.model_type in SPEECH_SEQ2SEQ_MODEL_TYPES and arch.endswith(
                "ForConditionalGeneration"):
            return TaskChoice("automatic-speech-recognition", "audio",
                              f"architectures: {arch}", SPEECH_SEQ2SEQ_AUTO)
        for suffix, found in SUFFIX_TASKS:
            if arch.endswith(suffix):
                found = audio_task(folder, found)
                return TaskChoice(found, modality(folder, found), f"architectures: {arch}")
    named = ", ".join(folder.architectures) or "none"
    raise ModelLoadError(
        f"'{folder.path}': cannot tell the task from its architectures ({named}); modelport "
        f"exports {', '.join(TASKS)}: pass --task TASK if one fits, {FALLBACK}"
    )


def modality(folder: Folder, task: str) -> str:
    """Image models take pixel_values, audio models input_values; everything else takes the
    tokenizer's inputs."""
    if task in AUDIO_TASKS:
        return "audio"
    if task in ("image-classification", "object-detection", "image-segmentation",
                "zero-shot-image-classification"):
        return "image"
    if task in ("text-classification", "token-classification", "text-generation",
                "question-answering", "fill-mask", "text2text-generation"):
        return "text"
    from modelport.models.hf.audio_config import is_audio_folder

    if is_audio_folder(folder):  # a Wav2Vec2Model: audio_plan names the audio tasks it exports
        return "audio"
    config = folder.config
    vision = "num_channels" in config or "image_size" in config
    has_text = any((folder.path / n).is_file() for n in (
        "tokenizer.json", "vocab.txt", "vocab.json", "tokenizer_config.json"))
    return "image" if vision and not has_text else "text"


#: tasks whose graph takes audio features (models.hf.audio_plan)
AUDIO_TASKS = frozenset({"audio-classification", "automatic-speech-recognition"})


def audio_task(folder: Folder, task: str) -> str:
    """A ``*ForSequenceClassification`` whose processor is an audio feature extractor
    (Wav2Vec2ForSequenceClassification, HubertForSequenceClassification) classifies audio."""
    if task == "text-classification":
        from modelport.models.hf.audio_config import is_audio_folder

        if is_audio_folder(folder):
            return "audio-classification"
    return task
