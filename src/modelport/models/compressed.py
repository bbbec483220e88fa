"""A ``modelport compress`` output directory as a model source (``modelport export DIR``).

The base model (named in compressed.json) brings the inputs, task, tokenizer and data; the
directory brings the compressed module and the pass reports, which go into every bundle's
manifest (``passes``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modelport.models.prepared import PreparedModel

#: ORT's integer kernels vs torch fake-quant: a few activations land one step apart; fidelity
#: on the eval split (accuracy / cosine, reported per target) is the real check for these
QDQ_TOLERANCE = {"atol": 0.02, "rtol": 0.02,
                 "reason": "Q/DQ graph (QAT): integer kernels vs fake-quant rounding"}


def is_compressed_dir(path: Path) -> bool:
    from modelport.passes.storage import MARKER

    return path.is_dir() and (path / MARKER).is_file()


def load(path: str | Path, resolve: Callable[[str], PreparedModel]) -> PreparedModel:
    """The compressed folder's base model (``resolve``d like any MODEL), its weights replaced."""
    from modelport.passes.storage import load_module, read_manifest

    path = Path(path)
    manifest = read_manifest(path)
    prepared = resolve(manifest["base"])
    prepared.module = load_module(path, prepared.module, manifest)
    recipe = manifest["recipe"]["name"]
    prepared.name = recipe if recipe.startswith(prepared.name) else f"{prepared.name}-{recipe}"
    prepared.source = f"{path} ({manifest['recipe']['name']} of {manifest['base']})"
    if any(r.get("op") == "qat" for r in manifest["structure"]):
        prepared.metadata["validation_tolerance"] = QDQ_TOLERANCE
    prepared.metadata = {
        **prepared.metadata,
        "compressed_from": manifest["base"],
        "compressed_dir": str(path.resolve()),
        "compression": {"recipe": manifest["recipe"], "structure": manifest["structure"],
                        "created_at": manifest.get("created_at"),
                        # compress --goal: every candidate the search measured
                        **({"search": manifest["search"]} if manifest.get("search") else {})},
        # the bundle manifest's `passes`: one PassReport per pass, in order
        # a chained directory (compressed from a compressed one) lists its parent's passes first
        "passes": list(prepared.metadata.get("passes", []))
                  + [{"recipe": manifest["recipe"]["name"], **r} for r in manifest["passes"]],
    }
    return prepared
