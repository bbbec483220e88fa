"""The compressed-model directory: safetensors weights + compressed.json (+ recipe.yaml).

No pickles: weights are safetensors, everything else is JSON/YAML. Loading rebuilds the base
model, replays the structural changes (layer drop, factorization, Q/DQ wrapping), conforms
tensor shapes (structured pruning) and loads the weights strictly.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.errors import ModelLoadError

if TYPE_CHECKING:
    from torch import nn

    from modelport.passes.compress_steps import CompressResult

MARKER = "compressed.json"
WEIGHTS = "model.safetensors"
FORMAT = "modelport-compressed"
FORMAT_VERSION = 1


def save_compressed(out: Path, result: CompressResult, *, force: bool = False,
                    seconds: float | None = None) -> Path:
    from modelport._version import __version__
    from modelport.io import publish_dir, sha256_file

    def fill(tmp: Path) -> None:
        from safetensors.torch import save_model

        save_model(result.module, str(tmp / WEIGHTS))
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "base": result.base,
            "recipe": result.recipe,
            "structure": result.structure,
            "passes": [r.to_dict() for r in result.reports],
            "weights": {"file": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS)},
            "seconds": seconds,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "modelport_version": __version__,
        }
        (tmp / MARKER).write_text(json.dumps(manifest, indent=2, default=str) + "\n", "utf-8")
        try:
            import yaml

            (tmp / "recipe.yaml").write_text(yaml.safe_dump(
                {k: v for k, v in result.recipe.items() if v not in (None, "")},
                sort_keys=False), "utf-8")
        except ImportError:
            pass
        from modelport.passes.pass_table import pass_markdown

        (tmp / "REPORT.md").write_text(
            f"# {result.recipe['name']} of {result.base}\n\n{pass_markdown(result.reports)}\n",
            "utf-8")

    return publish_dir(fill, out, force=force)


def read_manifest(path: Path) -> dict[str, Any]:
    marker = Path(path) / MARKER
    try:
        manifest = json.loads(marker.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"'{marker}' is unreadable ({exc}); re-run modelport compress") \
            from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(f"'{marker}' is not a modelport compressed model (format "
                             f"{manifest.get('format')} v{manifest.get('format_version')})")
    return manifest


def load_module(path: Path, base_module: nn.Module, manifest: dict[str, Any]) -> nn.Module:
    """Replay the structure on ``base_module`` and load the weights (checksum first)."""
    from safetensors.torch import load_file, load_model

    from modelport.io import sha256_file
    from modelport.passes.catalog import get_replay

    weights = Path(path) / manifest["weights"]["file"]
    if not weights.is_file():
        raise ModelLoadError(f"'{weights}' is missing; re-run modelport compress")
    if sha256_file(weights) != manifest["weights"]["sha256"]:
        raise ModelLoadError(f"'{weights}' does not match the sha256 in {MARKER}: the file was "
                             "changed or truncated; re-run modelport compress")
    module = base_module
    for record in manifest.get("structure", []):
        get_replay(record["op"])(module, record)
    conform_shapes(module, {k: tuple(v.shape) for k, v in load_file(str(weights)).items()})
    try:
        load_model(module, str(weights), strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"weights in '{weights}' do not fit the rebuilt model "
                             f"({str(exc).splitlines()[0]}); was it compressed from a different "
                             f"base than {manifest['base']}?") from None
    return module.eval()


def conform_shapes(module: nn.Module, shapes: dict[str, tuple[int, ...]]) -> None:
    """Resize parameters/buffers (and the layer attributes that describe them) to ``shapes``.

    Structured pruning changes only tensor sizes; the values come from the weights file.
    """
    import torch
    from torch import nn

    touched = set()
    for key, shape in shapes.items():
        owner_name, _, attr = key.rpartition(".")
        try:
            owner = module.get_submodule(owner_name) if owner_name else module
        except AttributeError:
            continue
        current = getattr(owner, attr, None)
        if not isinstance(current, torch.Tensor) or tuple(current.shape) == shape:
            continue
        new = torch.zeros(shape, dtype=current.dtype)
        if isinstance(current, nn.Parameter):
            setattr(owner, attr, nn.Parameter(new, requires_grad=current.requires_grad))
        else:
            owner._buffers[attr] = new
        touched.add(owner)
    for owner in touched:
        if isinstance(owner, nn.Linear):
            owner.out_features, owner.in_features = owner.weight.shape
        elif isinstance(owner, nn.Conv2d):
            owner.out_channels = owner.weight.shape[0]
            owner.in_channels = owner.weight.shape[1] * owner.groups
        elif isinstance(owner, nn.modules.batchnorm._BatchNorm):
            owner.num_features = owner.running_mean.shape[0]
        elif isinstance(owner, nn.LayerNorm):
            owner.normalized_shape = tuple(owner.weight.shape)
