"""What an export of a checkpoint folder will make, read without loading its weights.

``modelport inspect DIR`` prints this; ``prepare`` builds the model from the same plan, so the
two never disagree about the task, the inputs, the outputs or the preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.models.hf.adapter import Adapter, read_adapter
from modelport.models.hf.folder import ADAPTER_CONFIG, CONFIG, Folder, read_folder
from modelport.models.hf.sentence_pooling import SentencePipeline, read_pipeline
from modelport.models.hf.task import SPEECH_SEQ2SEQ_AUTO, TaskChoice, choose_task
from modelport.models.hf.text_heads import TEXT_HEADS
from modelport.models.hf.vision_plan import VISION_TASKS
from modelport.specs import TensorSpec


@dataclass
class FolderPlan:
    folder: Folder
    choice: TaskChoice
    inputs: list[TensorSpec]
    output: TensorSpec
    preprocessing: dict[str, Any]
    tokenizer_json: Path | None = None
    max_length: int = 128
    pipeline: SentencePipeline | None = None
    adapter: Adapter | None = None
    #: outputs after ``output`` (a detector's pred_boxes): models.hf.vision_plan
    extra_outputs: list[TensorSpec] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON `modelport inspect --json` prints."""
        config = self.folder.config
        return {
            "folder": str(self.folder.path),
            "task": self.choice.task,
            "detected_from": self.choice.how,
            "modality": self.choice.modality,
            "architectures": self.folder.architectures,
            "model_type": self.folder.model_type,
            "auto_class": self.choice.auto_class,
            "weights": self.folder.weights,
            "fidelity": self.choice.fidelity_kind,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in (self.output, *self.extra_outputs)],
            "max_length": self.max_length if self.choice.modality == "text" else None,
            "labels": len(config.get("id2label") or {}) or None,
            "sentence_transformers": self.pipeline.to_dict() if self.pipeline else None,
            "peft_adapter": self.adapter.record() if self.adapter else None,
            "preprocessing": self.preprocessing,
        }


def plan_folder(path: Path, *, task: str | None = None, trust_pickle: bool = False) -> FolderPlan:
    """Check the folder, choose the task, and work out the graph's I/O and preprocessing."""
    adapter = None
    if (path / ADAPTER_CONFIG).is_file() and not (path / CONFIG).is_file():
        adapter = read_adapter(path, trust_pickle=trust_pickle)
    folder = read_folder(adapter.base if adapter else path, trust_pickle=trust_pickle)
    choice = choose_task(folder, task or (adapter.task if adapter else None))
    config = folder.config
    labels = {str(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    num_labels = len(labels) or int(config.get("num_labels", 2))
    pre: dict[str, Any] = {"task": choice.task}
    if choice.fidelity_kind == "classification":
        pre["id2label"] = labels or {str(i): f"LABEL_{i}" for i in range(num_labels)}
        pre["multi_label"] = config.get("problem_type") == "multi_label_classification"
    hidden = int(config.get("hidden_size") or config.get("dim") or 0) or "hidden"
    if choice.auto_class == SPEECH_SEQ2SEQ_AUTO:  # Whisper: encoder + decoder graphs
        from modelport.models.hf.whisper_plan import plan_whisper

        inputs, output, tok_json, length = plan_whisper(folder, pre)
        return FolderPlan(folder, choice, inputs, output, pre, tokenizer_json=tok_json,
                          max_length=length, adapter=adapter)
    if choice.modality == "audio":  # input_values: models.hf.audio_plan
        from modelport.models.hf.audio_plan import plan_audio

        inputs, output = plan_audio(folder, choice, pre)
        return FolderPlan(folder, choice, inputs, output, pre, adapter=adapter)
    if choice.task in VISION_TASKS:  # boxes, masks: models.hf.vision_plan
        from modelport.models.hf.vision_plan import plan_vision

        inputs, outputs = plan_vision(folder, choice, pre, adapter)
        return FolderPlan(folder, choice, inputs, outputs[0], pre, adapter=adapter,
                          extra_outputs=outputs[1:])
    if choice.task == "zero-shot-image-classification":  # both towers: zero_shot_plan
        from modelport.models.hf.zero_shot_plan import plan_zero_shot

        inputs, outputs, tok_json, length = plan_zero_shot(folder, pre, adapter)
        return FolderPlan(folder, choice, inputs, outputs[0], pre, tokenizer_json=tok_json,
                          max_length=length, extra_outputs=outputs[1:])
    if choice.modality == "image":
        from modelport.models.hf.image_config import image_params

        params = image_params(folder)
        pre["image"] = params
        inputs = [TensorSpec("pixel_values", "float32",
                             ("batch", 3, params["height"], params["width"]))]
        if choice.task == "image-classification":
            output = TensorSpec("logits", "float32", ("batch", num_labels))
        else:
            output = TensorSpec("last_hidden_state", "float32", ("batch", "tokens", hidden))
        return FolderPlan(folder, choice, inputs, output, pre, adapter=adapter)
    from modelport.models.hf.tokenizer import has_tokenizer, text_inputs

    pipeline = read_pipeline(folder) if choice.task == "feature-extraction" else None
    tok_dir = adapter.path if adapter and has_tokenizer(adapter.path) else folder.path
    text = text_inputs(folder.path, config, tokenizer_dir=tok_dir,
                       st_max_length=pipeline.max_seq_length if pipeline else None)
    inputs = [TensorSpec(n, "int64", ("batch", "seq")) for n in text.input_names]
    more: list[TensorSpec] = []
    if choice.task in TEXT_HEADS:  # question-answering, fill-mask
        (output, *more), head_pre = TEXT_HEADS[choice.task](
            folder.path, config, text.tokenizer_json, text.max_length)
        pre.update(head_pre)
    elif choice.task == "token-classification":
        output = TensorSpec("logits", "float32", ("batch", "seq", num_labels))
    elif choice.task == "text-classification":
        output = TensorSpec("logits", "float32", ("batch", num_labels))
    elif choice.task == "text2text-generation":  # encoder + decoder graphs: models.hf.seq2seq
        output = TensorSpec("logits", "float32", ("batch", 1, int(config.get("vocab_size", 0))
                                                  or "vocab"))
    elif choice.task == "text-generation":  # + past key/values in and out: models.hf.causal_lm
        output = TensorSpec("logits", "float32", ("batch", "seq", int(config.get("vocab_size", 0))
                                                  or "vocab"))
    elif pipeline is not None:
        width = hidden * len(pipeline.pooling) if isinstance(hidden, int) else "hidden"
        output = TensorSpec("sentence_embedding", "float32", ("batch", width))
        pre["sentence_transformers"] = pipeline.to_dict()
    else:
        output = TensorSpec("last_hidden_state", "float32", ("batch", "seq", hidden))
    pre["max_length"] = text.max_length
    return FolderPlan(folder, choice, inputs, output, pre, tokenizer_json=text.tokenizer_json,
                      max_length=text.max_length, pipeline=pipeline, adapter=adapter,
                      extra_outputs=more)
