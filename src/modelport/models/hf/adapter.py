"""A PEFT LoRA adapter folder: read its base (a local folder) and merge the adapter into it.

The merged model is exported like any checkpoint; the manifest records the adapter (type,
rank, target modules) in ``model.metadata.peft_adapter``. ``peft`` is in the ``export`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.errors import MissingDependency, ModelLoadError
from modelport.models.hf.folder import (
    ADAPTER_CONFIG,
    ADAPTER_PICKLE,
    ADAPTER_SAFE,
    read_json,
    weights_kind,
)

#: PEFT task types -> modelport tasks (others: read the task from the base folder)
PEFT_TASKS = {"SEQ_CLS": "text-classification", "TOKEN_CLS": "token-classification",
              "FEATURE_EXTRACTION": "feature-extraction"}


@dataclass(frozen=True)
class Adapter:
    path: Path
    base: Path
    config: dict[str, Any]

    @property
    def task(self) -> str | None:
        return PEFT_TASKS.get(str(self.config.get("task_type") or ""))

    def record(self) -> dict[str, Any]:
        """What the manifest keeps about the adapter that was merged."""
        keys = ("peft_type", "task_type", "r", "lora_alpha", "lora_dropout", "target_modules",
                "modules_to_save", "base_model_name_or_path")
        info = {k: self.config.get(k) for k in keys if k in self.config}
        if isinstance(info.get("target_modules"), (set, tuple)):
            info["target_modules"] = sorted(info["target_modules"])
        return {"path": str(self.path.resolve()), "base": str(self.base.resolve()),
                "merged": True, **info}


def read_adapter(path: Path, *, trust_pickle: bool) -> Adapter:
    config = read_json(path / ADAPTER_CONFIG)
    if not isinstance(config, dict):
        raise ModelLoadError(f"'{path / ADAPTER_CONFIG}' must hold a JSON object")
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise ModelLoadError(
            f"'{path}' is a {config.get('peft_type')} adapter; modelport merges LoRA adapters "
            "only: merge it yourself (merge_and_unload) and save_pretrained the result"
        )
    weights_kind(path, (ADAPTER_SAFE,), (ADAPTER_PICKLE,), trust_pickle=trust_pickle)
    named = config.get("base_model_name_or_path")
    if not named:
        raise ModelLoadError(f"'{path / ADAPTER_CONFIG}' names no base_model_name_or_path")
    candidates = [Path(named)] if Path(named).is_absolute() else [path / named, Path(named)]
    base = next((c for c in candidates if c.is_dir()), None)
    if base is None:
        raise ModelLoadError(
            f"the base model '{named}' of adapter '{path}' is not a local folder (models are "
            "never downloaded): save the base there, or set base_model_name_or_path in "
            f"{ADAPTER_CONFIG} to its folder"
        )
    return Adapter(path, base, config)


def merge(model: Any, adapter: Adapter) -> Any:
    """The base model with the LoRA weights folded in (a plain transformers model again)."""
    try:
        from peft import PeftModel
    except ImportError:
        raise MissingDependency(
            f"'{adapter.path}' is a PEFT adapter: merging it needs 'peft': "
            "pip install \"modelport[export]\""
        ) from None
    try:
        merged = PeftModel.from_pretrained(model, str(adapter.path), is_trainable=False)
        return merged.merge_and_unload().eval()
    except Exception as exc:  # noqa: BLE001 - peft raises many types for a mismatched adapter
        first = str(exc).strip().splitlines()
        raise ModelLoadError(
            f"cannot apply adapter '{adapter.path}' to its base '{adapter.base}': "
            f"{type(exc).__name__}: {first[0][:200] if first else ''}"
        ) from None
