"""The graph I/O and preprocessing of an audio checkpoint folder (``modelport inspect`` and
export share it through ``describe.plan_folder``).

- audio-classification (wav2vec2/HuBERT ``*ForSequenceClassification``, AST
  ``ASTForAudioClassification``): ``input_values`` -> ``logits`` [batch, labels].
- automatic-speech-recognition, CTC (``Wav2Vec2ForCTC``, ``HubertForCTC``): ``input_values`` ->
  ``logits`` [batch, frames, vocab], decoded greedily with the vocabulary in
  ``preprocessing.ctc``.

``input_values`` is float32 [batch, samples] for waveform models (any length: the samples axis
is dynamic) and [batch, frames, mel bins] for AST (the extractor's fixed ``max_length``). No
``attention_mask`` input: one clip at a time is never padded, and calibration batches are
clips cut or padded to one length (``modelport.calibration_data.audio``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelport.errors import ModelLoadError
from modelport.models.hf.audio_config import audio_params
from modelport.specs import TensorSpec

if TYPE_CHECKING:
    from modelport.models.hf.folder import Folder
    from modelport.models.hf.task import TaskChoice


def plan_audio(folder: Folder, choice: TaskChoice,
               pre: dict[str, Any]) -> tuple[list[TensorSpec], TensorSpec]:
    """The graph's inputs and output; fills ``pre`` with ``audio`` (and ``ctc``)."""
    if choice.task not in OUTPUTS:
        raise ModelLoadError(
            f"'{folder.path}' is an audio model; modelport exports audio folders for "
            f"{', '.join(OUTPUTS)} (pass one with --task), or export it with a file.py:factory"
        )
    params = audio_params(folder)
    pre["audio"] = params
    if params["kind"] == "fbank":
        shape: tuple[int | str, ...] = ("batch", params["max_length"], params["num_mel_bins"])
    else:
        shape = ("batch", "samples")
    inputs = [TensorSpec("input_values", "float32", shape)]
    return inputs, OUTPUTS[choice.task](folder, pre)


def _classifier(folder: Folder, pre: dict[str, Any]) -> TensorSpec:
    config = folder.config
    labels = {str(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    count = len(labels) or int(config.get("num_labels", 2))
    pre["id2label"] = labels or {str(i): f"LABEL_{i}" for i in range(count)}
    pre["multi_label"] = config.get("problem_type") == "multi_label_classification"
    return TensorSpec("logits", "float32", ("batch", count))


def _ctc(folder: Folder, pre: dict[str, Any]) -> TensorSpec:
    from modelport.models.hf.ctc_vocab import ctc_vocab

    vocab_size = int(folder.config.get("vocab_size") or 0)
    pre["ctc"] = ctc_vocab(folder.path, vocab_size)
    return TensorSpec("logits", "float32", ("batch", "frames", vocab_size or "vocab"))


#: task -> the graph's output (and the task's own preprocessing entries)
OUTPUTS = {
    "audio-classification": _classifier,
    "automatic-speech-recognition": _ctc,
}
