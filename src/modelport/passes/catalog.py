"""Pass registry: name -> "module:Class", imported only when a recipe uses the pass."""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

from modelport.errors import UsageError

if TYPE_CHECKING:
    from modelport.passes.contract import Pass

PASSES: dict[str, str] = {
    "prune-unstructured": "modelport.passes.prune_unstructured:MagnitudePrune",
    "prune-structured": "modelport.passes.prune_structured:StructuredPrune",
    "layer-drop": "modelport.passes.layer_drop:LayerDrop",
    "low-rank": "modelport.passes.lowrank:LowRank",
    "distill": "modelport.passes.distill:Distill",
    "qat": "modelport.passes.qat:QuantizeAware",
}

#: how to redo a structural change on a fresh base model when a compressed dir is loaded
REPLAYS: dict[str, str] = {
    "layer-drop": "modelport.passes.layer_drop:replay",
    "low-rank": "modelport.passes.lowrank:replay",
    "qat": "modelport.passes.qat:replay",
}


def _import(path: str):
    module_name, _, attr = path.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def get_pass(name: str, *, where: str = "") -> type[Pass]:
    if name not in PASSES:
        close = difflib.get_close_matches(str(name), PASSES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        prefix = f"{where}: " if where else ""
        raise UsageError(f"{prefix}unknown pass '{name}': {hint}known passes are "
                         f"{', '.join(PASSES)}")
    return _import(PASSES[name])


def make_pass(name: str, options: dict, *, where: str = "") -> Pass:
    """The pass with ``options`` checked against its declared fields (names, types, ranges)."""
    from modelport.config_check import build_checked

    cls = get_pass(name, where=where)
    label = f"{where}: pass '{name}'" if where else f"pass '{name}'"
    return build_checked(cls, options, where=label)


def get_replay(op: str):
    if op not in REPLAYS:
        raise UsageError(f"compressed model needs structure op '{op}', which this modelport "
                         "version does not know: upgrade modelport")
    return _import(REPLAYS[op])
