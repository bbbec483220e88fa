"""A checked checkpoint folder -> PreparedModel: weights through transformers' Auto classes
(offline, float32, eager attention), the graph I/O from ``wrappers``, data for its task."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import ModelLoadError
from modelport.models.hf.describe import FolderPlan, plan_folder
from modelport.models.hf.task import SPEECH_SEQ2SEQ_AUTO
from modelport.models.hf.text_heads import TEXT_HEADS
from modelport.models.hf.vision_plan import VISION_TASKS
from modelport.models.prepared import PreparedModel
from modelport.tasks import TASKS

log = logging.getLogger("modelport")

EVAL_FRACTION = 0.4
BENCH_SEQ = 128


def prepare(path: Path, *, task: str | None = None, trust_pickle: bool = False) -> PreparedModel:
    plan = plan_folder(path, task=task, trust_pickle=trust_pickle)
    model = merge_adapter(load_weights(plan), plan)
    if plan.choice.task == "text-generation":  # KV-cache graph, perplexity data: its own module
        from modelport.models.hf.causal_lm import prepare_causal_lm

        prepared = prepare_causal_lm(plan, model)
        if plan.adapter is not None:
            prepared.metadata["peft_adapter"] = plan.adapter.record()
        return prepared
    if plan.choice.task == "text2text-generation":  # encoder + decoder graphs: models.hf.seq2seq
        from modelport.models.hf.seq2seq_prepare import prepare_seq2seq

        prepared = prepare_seq2seq(plan, model)
        if plan.adapter is not None:
            prepared.metadata["peft_adapter"] = plan.adapter.record()
        return prepared
    if plan.choice.auto_class == SPEECH_SEQ2SEQ_AUTO:  # Whisper: models.hf.whisper_prepare
        from modelport.models.hf.whisper_prepare import prepare_whisper

        prepared = prepare_whisper(plan, model)
        if plan.adapter is not None:
            prepared.metadata["peft_adapter"] = plan.adapter.record()
        return prepared
    module = wrap(model, plan)
    metadata: dict[str, Any] = {
        "hf_folder": str(path.resolve()), "hf_task": plan.choice.task,
        "task_detected_from": plan.choice.how, "architectures": plan.folder.architectures,
        "model_type": plan.folder.model_type,
    }
    if plan.adapter is not None:
        metadata["peft_adapter"] = plan.adapter.record()
    common: dict[str, Any] = {
        "name": path.resolve().name,
        "source": f"{path} (Hugging Face folder, {plan.choice.task})",
        "task": plan.choice.fidelity_kind, "inputs": plan.inputs,
        "output_names": [plan.output.name, *(s.name for s in plan.extra_outputs)],
        "module": module, "metadata": metadata,
        "preprocessing": dict(plan.preprocessing),
    }
    if plan.choice.modality == "audio":
        from modelport.models.hf.audio_prepare import audio_model

        return audio_model(plan, common)
    if plan.choice.task == "zero-shot-image-classification":  # CLIP, SigLIP: both towers
        from modelport.models.hf.zero_shot_prepare import zero_shot_model

        return zero_shot_model(plan, common, model, synthetic_pixels)
    if plan.choice.task in VISION_TASKS:  # detectors, segmenters: models.hf.vision_prepare
        from modelport.models.hf.vision_prepare import vision_model

        return vision_model(plan, common, synthetic_pixels)
    if plan.choice.task in TEXT_HEADS:  # question answering, fill-mask: their own data
        from modelport.models.hf.text_head_data import text_head_model

        return text_head_model(plan, common)
    if plan.choice.modality == "image":
        return PreparedModel(example_inputs=synthetic_pixels(plan, 2, seed=0),
                             make_inputs=lambda batch: synthetic_pixels(plan, batch, seed=batch),
                             **common)
    return _text_model(plan, common)


def load_weights(plan: FolderPlan) -> Any:
    """The task's Auto class on the folder: local files only, float32, eager attention."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    from modelport.models.hf.versions import warn_untested_transformers

    warn_untested_transformers()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    auto = getattr(transformers, plan.choice.auto_class)
    try:
        model = auto.from_pretrained(
            str(plan.folder.path), local_files_only=True, dtype=torch.float32,
            attn_implementation="eager", use_safetensors=plan.folder.weights == "safetensors",
        )
    except (ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()
        arch = ", ".join(plan.folder.architectures) or plan.folder.model_type or "unknown"
        raise ModelLoadError(
            f"'{plan.folder.path}' ({arch}) cannot be loaded for {plan.choice.task} with "
            f"transformers.{plan.choice.auto_class} ({first[0][:160] if first else ''}); "
            f"modelport exports {', '.join(TASKS)} of architectures transformers knows: pass "
            "another --task, or export it with a file.py:factory"
        ) from None
    except OSError as exc:
        raise ModelLoadError(f"cannot read the weights in '{plan.folder.path}': {exc}") from None
    except Exception as exc:  # noqa: BLE001 - damaged or mismatched weights surface as many types
        from modelport.terminal import exception_line

        reason = exception_line(exc, 240)
        if "ignore_mismatched_sizes" in reason:  # its details went to a report we keep quiet
            reason = "a weight's shape differs from the one config.json describes"
        raise ModelLoadError(
            f"cannot load the weights in '{plan.folder.path}' ({reason}): the weights do not "
            "fit its config.json or are damaged; re-save the model with save_pretrained()"
        ) from None
    return model.eval()


def merge_adapter(model: Any, plan: FolderPlan) -> Any:
    """The model with the folder's PEFT LoRA adapter merged in (the model itself without one);
    for every task, causal LMs and seq2seq models included. Record ``plan.adapter.record()``
    in the metadata as ``peft_adapter``."""
    if plan.adapter is None:
        return model
    from modelport.models.hf.adapter import merge

    return merge(model, plan.adapter)


def wrap(model: Any, plan: FolderPlan) -> Any:
    from modelport.models.hf.wrappers import ImageHead, SentenceEmbedder, TextHead

    if plan.choice.modality == "audio":
        from modelport.models.hf.audio_wrappers import AudioHead

        return AudioHead(model, plan.output.name).eval()
    if plan.choice.task == "zero-shot-image-classification":
        from modelport.models.hf.zero_shot_prepare import wrap_dual

        return wrap_dual(model, plan)
    if plan.choice.task in VISION_TASKS:
        from modelport.models.hf.vision_wrappers import NamedImageOutputs

        names = [plan.output.name, *[s.name for s in plan.extra_outputs]]
        return NamedImageOutputs(model, names).eval()
    if plan.choice.modality == "image":
        return ImageHead(model, plan.output.name).eval()
    if plan.extra_outputs and plan.choice.modality == "text":
        names = (plan.output.name, *(s.name for s in plan.extra_outputs))
        return TextHead(model, names).eval()
    if plan.pipeline is not None:
        return SentenceEmbedder(model, plan.pipeline).eval()
    return TextHead(model, plan.output.name).eval()


def synthetic_pixels(plan: FolderPlan, batch: int, *, seed: int) -> dict[str, np.ndarray]:
    """Normalized-looking pixels (about N(0, 1)): used only when the user gives no images."""
    spec = plan.inputs[0]
    rng = np.random.default_rng(seed)
    shape = (batch, *spec.shape[1:])
    return {spec.name: np.clip(rng.standard_normal(shape), -2.5, 2.5).astype(np.float32)}


def _text_model(plan: FolderPlan, common: dict[str, Any]) -> PreparedModel:
    from modelport.calibration_data.loaders import texts_to_set
    from modelport.calibration_data.text import TextTokenizer
    from modelport.models.data import SENTENCES, sentences

    assert plan.tokenizer_json is not None
    tokenizer = TextTokenizer(plan.tokenizer_json, max_length=plan.max_length)
    specs = {s.name: s for s in plan.inputs}
    texts = sentences()

    def make_inputs(batch: int) -> dict[str, np.ndarray]:
        start = (batch * 37) % (len(texts) - batch)
        return tokenizer.encode(texts[start : start + batch], specs)

    def default_data():
        log.warning("no --calib: calibrating and checking on modelport's %d English sentences; "
                    "your own text (--calib FILE, one example a line) gives a better INT8 and "
                    "a fidelity that speaks for your data", len(texts))
        full = texts_to_set(texts, tokenizer, specs,
                            source=f"builtin sentences ({SENTENCES.name})")
        return full.split(EVAL_FRACTION)

    return PreparedModel(
        example_inputs=tokenizer.encode(texts[:2], specs), tokenizer_json=plan.tokenizer_json,
        max_length=plan.max_length, bench_dims={"seq": min(BENCH_SEQ, plan.max_length)},
        make_inputs=make_inputs, default_data=default_data, **common,
    )
