"""When both ONNX exporters fail: which op, and which of the user's modules calls it.

The exporters' own errors name the op (``userlib.wobble.default``, ``aten::xyz``) but not where
it is in the model. One eager forward pass under a TorchDispatchMode, with hooks that track the
module being run, finds the first module that dispatches that op.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

_PATTERNS = (
    # dynamo: "No ONNX function found for <OpOverload(op='userlib.wobble', overload='default')>"
    re.compile(r"No ONNX function found for <OpOverload\(op='([\w.]+)', overload='(\w+)'\)>"),
    # torchscript: "unrecognized namespace userlib::wobble" / "the operator 'aten::xyz' to ONNX"
    re.compile(r"unrecognized namespace ([\w]+::[\w]+)"),
    re.compile(r"operator '?([\w]+::[\w]+)'? to ONNX"),
)


def failing_op(*messages: str) -> str | None:
    """``namespace::name`` of the op an exporter could not convert, if its message says."""
    for text in messages:
        for pattern in _PATTERNS:
            match = pattern.search(text)
            if match:
                name = match.group(1)
                if "::" not in name:  # "userlib.wobble" -> "userlib::wobble"
                    namespace, _, op = name.partition(".")
                    name = f"{namespace}::{op}"
                return name
    return None


def locate_op(module: Any, feeds: dict[str, np.ndarray], op: str) -> str | None:
    """'path.to.submodule (ClassName)' of the first module whose forward dispatches ``op``."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    stack: list[str] = []
    found: list[str] = []

    def label(name: str, sub: Any) -> str:
        name = name.removeprefix("inner.") if name != "inner" else ""  # our positional wrapper
        return f"{name or '<root>'} ({type(sub).__name__})"

    def enter(name: str):
        def hook(*_: Any) -> None:  # returns None: a hook's return value would replace args
            stack.append(name)
        return hook

    def leave(*_: Any) -> None:
        if stack:
            stack.pop()

    hooks = []
    for name, sub in module.named_modules():
        if type(sub).__name__ == "Positional" and name == "":
            continue
        hooks.append(sub.register_forward_pre_hook(enter(label(name, sub))))
        hooks.append(sub.register_forward_hook(leave))

    class _Find(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not found and func._schema.name == op and stack:
                found.append(stack[-1])
            return func(*args, **(kwargs or {}))

    try:
        with torch.no_grad(), _Find():
            module(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feeds.items()})
    except Exception:  # noqa: BLE001 - only a better message is at stake
        return None
    finally:
        for hook in hooks:
            hook.remove()
    return found[0] if found else None
