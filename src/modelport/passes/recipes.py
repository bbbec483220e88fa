"""Recipes: an ordered list of passes plus train settings, from YAML or a built-in name.

YAML form::

    name: my-recipe
    seed: 0
    train: {epochs: 10, lr: 0.001, batch_size: 32}
    passes:
      - prune-structured: {ratio: 0.5}
      - distill: {epochs: 20}
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

from modelport.errors import MissingDependency, UsageError

#: Built-ins, small enough for a 2-core CPU: minutes, not hours.
BUILTIN_RECIPES: dict[str, dict[str, Any]] = {
    "digits-cnn-slim": {
        "description": "half the channels of every conv (torch-pruning, L2), then distilled",
        "model": "builtin:digits-cnn",
        "train": {"epochs": 60, "lr": 3e-3, "batch_size": 32, "patience": 15},
        "passes": [{"prune-structured": {"ratio": 0.5}}, {"distill": {"temperature": 4.0}}],
    },
    "digits-cnn-lowrank": {
        "description": "SVD factorization of the 3x3 convs (90% energy), then distilled",
        "model": "builtin:digits-cnn",
        "train": {"epochs": 40, "lr": 2e-3, "batch_size": 32, "patience": 10},
        "passes": [{"low-rank": {"energy": 0.9}}, {"distill": {}}],
    },
    "digits-cnn-sparse": {
        "description": "70% unstructured magnitude pruning in 3 steps with fine-tuning",
        "model": "builtin:digits-cnn",
        "train": {"epochs": 10, "lr": 1e-3, "batch_size": 32, "patience": None},
        "passes": [{"prune-unstructured": {"amount": 0.7, "steps": 3, "finetune_epochs": 10}}],
    },
    "digits-cnn-qat": {
        "description": "quantization-aware training (Q/DQ INT8 ONNX)",
        "model": "builtin:digits-cnn",
        "train": {"batch_size": 32, "patience": 3},
        "passes": [{"qat": {"epochs": 10, "lr": 1e-4}}],
    },
    "digits-cnn-ptq": {
        "description": "the same Q/DQ layers calibrated only (PTQ): QAT's baseline",
        "model": "builtin:digits-cnn",
        "train": {"batch_size": 32},
        "passes": [{"qat": {"epochs": 0}}],
    },
    "minilm-l3-distill": {
        "description": "3-layer student (the 3 teacher blocks it misses least, chosen on the "
                       "calibration split), distilled with cosine on the sentence embedding over "
                       "the calibration sentences plus 8000 augmented rows made from them",
        "model": "builtin:minilm",
        "train": {"epochs": 4, "lr": 2e-4, "batch_size": 32, "patience": 2},
        "passes": [{"layer-drop": {"keep": "greedy"}},
                   {"distill": {"loss": "cosine", "augment": 8000}}],
    },
    "minilm-l3-qat": {
        "description": "quantization-aware training (Q/DQ INT8 ONNX) of an already distilled "
                       "student: modelport compress DIR_OF_minilm-l3-distill --recipe minilm-l3-qat",
        "train": {"batch_size": 32, "patience": 2},
        "passes": [{"qat": {"epochs": 2, "lr": 2e-5}}],
    },
    "minilm-prune-half": {
        "description": "half the attention heads and half the FFN neurons of every block (L2), "
                       "then distilled like minilm-l3-distill",
        "model": "builtin:minilm",
        "train": {"epochs": 3, "lr": 2e-4, "batch_size": 32, "patience": 2},
        "passes": [{"prune-structured": {"ratio": 0.5, "heads": 0.5}},
                   {"distill": {"loss": "cosine", "augment": 8000}}],
    },
    "minilm-5x": {
        "description": "the outcome of `compress builtin:minilm --goal speed=5x --keep 0.97 "
                       "--target openvino:cpu:int8` (experiments/compress_goal.py, "
                       "docs/compression.md): a quarter of the attention heads pruned (Taylor), "
                       "distilled on embedding + hidden states + attention maps over the "
                       "calibration sentences and 4000 augmented rows; export it to "
                       "openvino:cpu:int8",
        "model": "builtin:minilm",
        "train": {"epochs": 2, "lr": 2e-4, "batch_size": 32, "patience": 2},
        "passes": [{"prune-structured": {"ratio": 0.0, "heads": 0.25, "importance": "taylor"}},
                   {"distill": {"epochs": 2, "lr": 2e-4, "batch_size": 32, "hidden_weight": 1.0,
                                "attention_weight": 1.0, "augment": 4000}}],
    },
}


def load_recipe(recipe: str | Path | dict[str, Any]) -> dict[str, Any]:
    """A built-in name, a YAML path or a dict -> a checked, normalized recipe dict."""
    if isinstance(recipe, dict):
        raw = copy.deepcopy(recipe)
        where = f"recipe '{raw.get('name', 'recipe')}'"
    elif str(recipe) in BUILTIN_RECIPES:
        raw = copy.deepcopy(BUILTIN_RECIPES[str(recipe)])
        raw.setdefault("name", str(recipe))
        where = f"built-in recipe '{recipe}'"
    else:
        path = Path(recipe)
        if not path.is_file():
            close = difflib.get_close_matches(str(recipe), BUILTIN_RECIPES, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UsageError(f"recipe '{recipe}' is neither a YAML file nor a built-in recipe: "
                             f"{hint}built-ins are {', '.join(BUILTIN_RECIPES)}")
        try:
            import yaml
        except ImportError:
            raise MissingDependency("YAML recipes need 'pyyaml': pip install "
                                    "\"modelport[export]\"") from None
        try:
            raw = yaml.safe_load(path.read_text("utf-8"))
        except yaml.YAMLError as exc:
            raise UsageError(f"recipe '{path}' is not valid YAML: "
                             f"{str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise UsageError(f"recipe '{path}' must be a mapping with a 'passes' list")
        raw.setdefault("name", path.stem)
        where = f"recipe '{path}'"
    return normalize(raw, where=where)


RECIPE_KEYS = ("name", "description", "model", "seed", "train", "passes")


def normalize(raw: dict[str, Any], *, where: str | None = None) -> dict[str, Any]:
    """Check every key of a recipe against its declaration (recipe keys, pass options, train
    settings) before any model loads; errors are one line naming ``where`` (the file)."""
    from modelport.config_check import build_checked
    from modelport.passes.catalog import make_pass
    from modelport.passes.contract import TrainSettings

    name = raw.get("name", "recipe")
    where = where or f"recipe '{name}'"
    for key in raw:
        if key not in RECIPE_KEYS:
            close = difflib.get_close_matches(str(key), RECIPE_KEYS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"keys are {', '.join(RECIPE_KEYS)}"
            raise UsageError(f"{where}: unknown key '{key}'; {hint}")
    for key in ("name", "description", "model"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise UsageError(f"{where}: '{key}' takes a string, got {type(raw[key]).__name__} "
                             f"{raw[key]!r}")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"{where}: 'seed' takes an int >= 0, got {seed!r}")
    passes = raw.get("passes")
    if not isinstance(passes, list) or not passes:
        raise UsageError(f"{where}: needs a non-empty 'passes' list (e.g. passes: "
                         "[{prune-structured: {ratio: 0.5}}, distill])")
    steps = []
    for i, entry in enumerate(passes):
        if isinstance(entry, str):
            pname, options = entry, {}
        elif isinstance(entry, dict) and "pass" in entry:
            pname = entry["pass"]
            if set(entry) == {"pass", "options"}:  # the normalized form
                options = entry["options"] or {}
            else:
                options = {k: v for k, v in entry.items() if k != "pass"}
        elif isinstance(entry, dict) and len(entry) == 1:
            pname, options = next(iter(entry.items()))
            options = options or {}
        else:
            raise UsageError(f"{where}: pass {i} must be a name or {{name: {{options}}}}")
        if not isinstance(pname, str):
            raise UsageError(f"{where}: pass {i} must be named by a string, got {pname!r}")
        if not isinstance(options, dict):
            raise UsageError(f"{where}: options of pass '{pname}' must be a mapping, got "
                             f"{type(options).__name__}")
        p = make_pass(pname, options, where=where)  # fail now, not mid-pipeline
        steps.append({"pass": pname, "options": {k: getattr(p, k) for k in options}})
    train = raw.get("train") or {}
    settings = build_checked(TrainSettings, train, where=f"{where}: train", what="setting")
    return {"name": name, "description": raw.get("description", ""), "model": raw.get("model"),
            "seed": seed, "train": {k: getattr(settings, k) for k in train}, "passes": steps}
