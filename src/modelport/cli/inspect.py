"""`modelport inspect DIR`: what an export of a Hugging Face checkpoint folder would make.

Reads the folder's config, tokenizer and preprocessing files (never its weights), so a user
sees the detected task, the graph's inputs/outputs and what the bundle will carry before an
export starts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from modelport.errors import ModelLoadError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from modelport.tasks import TASKS

    p = sub.add_parser("inspect", help="show the task, inputs and outputs an export of a "
                                       "Hugging Face checkpoint folder would have")
    p.add_argument("folder", metavar="DIR", type=Path)
    p.add_argument("--task", default=None, choices=TASKS,
                   help="the task to export for (default: read from the folder)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow a pytorch_model.bin pickle checkpoint")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    from modelport.models.hf import is_hf_folder
    from modelport.models.hf.describe import plan_folder

    if not args.folder.is_dir():
        raise ModelLoadError(f"'{args.folder}' is not a folder")
    if not is_hf_folder(args.folder):
        raise ModelLoadError(
            f"'{args.folder}' has no config.json: not a Hugging Face checkpoint folder (what "
            "save_pretrained() writes)"
        )
    plan = plan_folder(args.folder, task=args.task, trust_pickle=args.trust_pickle).to_dict()
    if args.json:
        print(json.dumps(plan, indent=2))
    else:
        print(render(plan))
    return 0


#: fidelity kinds that name a task with its own metric -> how inspect names that metric
TASK_METRICS = {
    "audio-classification": "top-1 agreement",
    "automatic-speech-recognition": "word error rate of the greedy transcript",
    "object-detection": "F1 of the detections (same label, IoU >= 0.5)",
    "image-segmentation": "mean IoU of the argmax mask",
    "question-answering": "exact match of each window's answer span",
    "fill-mask": "top-1 agreement at the masked positions",
    "zero-shot-image-classification": "top-1 agreement of images over texts + embedding cosine",
    "text2text-generation": "greedy tokens equal transformers' (FP32), chrF (weight-only)",
}


def render(plan: dict[str, Any]) -> str:
    def spec(s: dict[str, Any]) -> str:
        return f"{s['name']} {s['dtype']}[{', '.join(str(d) for d in s['shape'])}]"

    pre = plan["preprocessing"]
    lines = [
        f"folder       {plan['folder']}",
        f"task         {plan['task']} (from {plan['detected_from']})",
        (f"model        {plan['model_type']} {', '.join(plan['architectures'])}, "
         f"{plan['weights']} weights, loaded with transformers.{plan['auto_class']}"),
        f"inputs       {', '.join(spec(s) for s in plan['inputs'])}",
        f"outputs      {', '.join(spec(s) for s in plan['outputs'])}",
    ]
    if plan["task"] == "text2text-generation":  # refused past the limit, never cut
        lines.append("text         tokenizer.json in the bundle; an encoder and a decoder graph "
                     "(docs/encoder-decoder.md)")
    elif plan["modality"] == "text":
        lines.append(f"text         tokenizer.json in the bundle, truncated to "
                     f"{plan['max_length']} tokens")
    if pre.get("image"):
        image = pre["image"]
        steps = [f"{image['height']}x{image['width']}"]
        steps += [f"{k} {image[k]}" for k in ("shortest_edge", "crop_size", "rescale_factor",
                                              "mean", "std") if image.get(k) is not None]
        lines.append("image        " + ", ".join(steps))
    if pre.get("audio"):
        from modelport.tasks.audio import describe_audio

        lines.extend(describe_audio(pre))
    if pre.get("id2label"):
        names = list(pre["id2label"].values())
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        kind = "sigmoid per label (multi-label)" if pre.get("multi_label") else "softmax"
        lines.append(f"labels       {shown}; scores: {kind}")
    if pre.get("question_answering"):
        qa = pre["question_answering"]
        lines.append(f"windows      question + context in {qa['max_length']} tokens, overlapping "
                     f"by {qa['stride']}; answers of at most {qa['max_answer_len']} tokens")
    if pre.get("zero_shot"):
        zs = pre["zero_shot"]
        lines.append(f"labels       --labels in the prompt \"{zs['template']}\"; scores: "
                     f"{'a sigmoid per label' if zs['score'] == 'sigmoid' else 'softmax over labels'}"
                     f"{', prompts padded to ' + str(zs['pad_to']) + ' tokens' if zs.get('pad_to') else ''}")
    if pre.get("mask_token"):
        lines.append(f"mask         {pre['mask_token']} (id {pre['mask_token_id']})")
    if plan.get("sentence_transformers"):
        st = plan["sentence_transformers"]
        lines.append(f"pooling      sentence-transformers: {' + '.join(st['pooling'])}"
                     f"{', L2-normalized' if st['normalize'] else ''}")
    if plan.get("peft_adapter"):
        ad = plan["peft_adapter"]
        lines.append(f"adapter      {ad.get('peft_type', 'LORA')} r={ad.get('r')} on "
                     f"{ad.get('target_modules')}: merged into {ad['base']}")
    metric = ("top-1 agreement (accuracy with labels)" if plan["fidelity"] == "classification"
              else TASK_METRICS.get(plan["fidelity"], "cosine"))
    lines.append(f"fidelity     {metric} vs torch FP32")
    return "\n".join(lines)
