"""What a checkpoint folder holds, checked before anything is loaded.

Every refusal is one line that says what to do: a missing config or weights, a pickle
checkpoint (``.bin``: unpickling runs code) without ``--trust-pickle``, a folder that needs its
own Python code (``auto_map``: modelport never runs a checkpoint's code), a malformed JSON file,
a damaged safetensors file (``weights_check``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.errors import ModelLoadError

CONFIG = "config.json"
ADAPTER_CONFIG = "adapter_config.json"
SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
ADAPTER_SAFE = "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"


@dataclass
class Folder:
    """A checked checkpoint folder: its config, and how its weights are stored."""

    path: Path
    config: dict[str, Any]
    weights: str  # "safetensors" | "pickle"
    #: sentence-transformers modules.json (a list of modules), when the folder has one
    modules: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def architectures(self) -> list[str]:
        return list(self.config.get("architectures") or [])

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", ""))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"'{path}' is not valid JSON ({exc}); fix or re-save it") from None


def read_folder(path: Path, *, trust_pickle: bool = False) -> Folder:
    """Check a checkpoint folder; raise ModelLoadError (exit 2) naming what is wrong."""
    if not (path / CONFIG).is_file():
        raise ModelLoadError(
            f"'{path}' has no {CONFIG}: a Hugging Face checkpoint folder is what "
            "save_pretrained() writes (config.json + model.safetensors + tokenizer files)"
        )
    config = read_json(path / CONFIG)
    if not isinstance(config, dict):
        raise ModelLoadError(f"'{path / CONFIG}' must hold a JSON object")
    refuse_remote_code(path, config)
    weights = weights_kind(path, SAFE_WEIGHTS, PICKLE_WEIGHTS, trust_pickle=trust_pickle)
    modules = None
    if (path / "modules.json").is_file():
        modules = read_json(path / "modules.json")
        if not isinstance(modules, list):
            raise ModelLoadError(f"'{path / 'modules.json'}' must hold a list of modules")
    return Folder(path, config, weights, modules)


def refuse_remote_code(path: Path, config: dict[str, Any]) -> None:
    if config.get("auto_map") or list(path.glob("modeling_*.py")):
        names = ", ".join(sorted(config.get("auto_map") or {})) or "modeling_*.py"
        raise ModelLoadError(
            f"'{path}' needs its own Python code ({names}: trust_remote_code); modelport never "
            "runs a checkpoint's code: export it with a file.py:factory that builds the model"
        )


def weights_kind(path: Path, safe: tuple[str, ...], pickle: tuple[str, ...], *,
                 trust_pickle: bool) -> str:
    """'safetensors', or 'pickle' when allowed; refuse a folder with neither."""
    if any((path / name).is_file() for name in safe):
        from modelport.models.hf.weights_check import check_safetensors

        check_safetensors(path, safe)  # a truncated or foreign file: one line now, not at load
        return "safetensors"
    found = [name for name in pickle if (path / name).is_file()]
    if found:
        if not trust_pickle:
            raise ModelLoadError(
                f"'{path / found[0]}' is a pickle checkpoint: loading it runs code from the "
                "file; convert it to safetensors, or pass --trust-pickle if you trust its source"
            )
        return "pickle"
    raise ModelLoadError(
        f"'{path}' has no weights (looked for {', '.join(safe + pickle)}): copy the whole "
        "save_pretrained() output, not only its config"
    )
