"""A cache of torch -> ONNX exports, keyed on what the exporter sees.

Why: the dynamo export of a transformer takes tens of seconds and is the same every time the
same model is exported again (another target, another budget, a re-run after a refused INT8).
The key covers everything the graph depends on: the weights and buffers, the module tree and
the source of its classes, the config, the input and output declarations and example inputs,
the opset and simplify settings, and the versions of modelport, torch, onnx and the packages
the module's classes come from. A hit is still validated against torch like a fresh export
(``export_validated``): if the check fails, the entry is dropped and the model exported again.

``MODELPORT_CACHE`` (default ``~/.cache/modelport``) holds it under ``onnx/``;
``MODELPORT_EXPORT_CACHE=0`` turns it off. Models whose weights exceed
``MODELPORT_EXPORT_CACHE_MAX_MB`` (default 1024) are not cached: the copy would cost more disk
than the export costs time. At most ``MAX_ENTRIES`` graphs and ``MAX_TOTAL_BYTES`` are kept,
the least recently used dropped first.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("modelport")

#: entries and bytes kept; the least recently used go first
MAX_ENTRIES = 8
MAX_TOTAL_BYTES = 4_000_000_000
_FILES = ("model.onnx", "meta.json")


def cache_dir() -> Path | None:
    """Where exports are cached, or None when the cache is off."""
    if os.environ.get("MODELPORT_EXPORT_CACHE", "1").strip().lower() in ("0", "off", "false", "no"):
        return None
    from modelport.io import cache_root

    return cache_root() / "onnx"


def _max_bytes() -> int:
    try:
        return int(float(os.environ.get("MODELPORT_EXPORT_CACHE_MAX_MB", "1024")) * 1e6)
    except ValueError:
        return int(1024e6)


def export_key(model, *, opset: int | None, simplify: bool) -> str | None:
    """The cache key of exporting ``model`` this way; None when it must not be cached."""
    if cache_dir() is None or model.module is None or model.exported_program is not None:
        return None
    import torch

    state = model.module.state_dict(keep_vars=False)
    tensors = [(k, v) for k, v in state.items() if isinstance(v, torch.Tensor)]
    if sum(v.numel() * v.element_size() for _, v in tensors) > _max_bytes():
        return None
    digest = hashlib.sha256()
    digest.update(json.dumps(_describe(model, opset, simplify), sort_keys=True,
                             default=str).encode())
    for name, value in tensors:
        _feed_tensor(digest, name, value)
    for name in sorted(model.example_inputs):
        array = model.example_inputs[name]
        digest.update(f"{name}|{array.dtype}|{array.shape}".encode())
        digest.update(memoryview(array.tobytes()))
    return digest.hexdigest()[:32]


def _describe(model, opset: int | None, simplify: bool) -> dict[str, Any]:
    """Everything but the tensors: the module tree, its classes' code, versions, declarations."""
    import onnx
    import torch

    from modelport._version import __version__

    module = model.module
    classes: dict[str, str] = {}
    hooks: list[str] = []
    for sub in module.modules():
        cls = type(sub)
        name = f"{cls.__module__}.{cls.__qualname__}"
        if name not in classes:
            classes[name] = _source_digest(cls)
        for attr in ("_forward_hooks", "_forward_pre_hooks"):
            hooks += [getattr(h, "__qualname__", repr(h)) for h in getattr(sub, attr, {}).values()]
    packages = sorted({n.split(".", 1)[0] for n in classes})
    config = getattr(module, "config", None)
    return {
        "modelport": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
        "packages": {p: _package_version(p) for p in packages},
        "opset": opset, "simplify": simplify, "training": bool(module.training),
        "tree": repr(module), "classes": classes, "hooks": hooks,
        "config": config.to_json_string() if hasattr(config, "to_json_string") else repr(config),
        "inputs": [(s.name, s.dtype, list(s.shape), dict(s.dynamic_axes)) for s in model.inputs],
        "outputs": list(model.output_names),
    }


def _source_digest(cls: type) -> str:
    try:
        return hashlib.sha256(inspect.getsource(cls).encode()).hexdigest()[:16]
    except (OSError, TypeError):  # built-in or defined interactively: its name stands for it
        return "no source"


def _package_version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "local"


def _feed_tensor(digest, name: str, value) -> None:
    import torch

    t = value.detach().cpu().contiguous()
    digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
    if t.numel():
        digest.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))


def lookup(key: str, dst: Path) -> dict[str, Any] | None:
    """Copy the cached graph for ``key`` to ``dst``; its export facts, or None on a miss."""
    root = cache_dir()
    entry = root / key if root else None
    if entry is None or not all((entry / f).is_file() for f in _FILES):
        return None
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        shutil.copyfile(entry / "model.onnx", dst)
    except (OSError, ValueError) as exc:
        log.debug("export cache entry %s unreadable (%s); exporting", key, exc)
        return None
    with contextlib.suppress(OSError):
        os.utime(entry)  # recently used
    return meta


def store(key: str, src: Path, meta: dict[str, Any]) -> None:
    """Keep ``src`` under ``key``: written in a temp dir and renamed, so a reader never sees half
    an entry; a failure to cache is logged, never raised (the export itself succeeded)."""
    root = cache_dir()
    if root is None:
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        try:
            shutil.copyfile(src, tmp / "model.onnx")
            (tmp / "meta.json").write_text(json.dumps({**meta, "stored": time.time()}),
                                           encoding="utf-8")
            os.replace(tmp, root / key)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another process stored it first, or no room
            if not (root / key / "meta.json").is_file():
                raise
        _prune(root)
    except OSError as exc:
        log.debug("could not cache the export (%s)", exc)


def drop(key: str) -> None:
    root = cache_dir()
    if root is not None:
        shutil.rmtree(root / key, ignore_errors=True)


def _prune(root: Path) -> None:
    entries = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)  # newest first
    total = 0
    for rank, entry in enumerate(entries):
        total += sum(f.stat().st_size for f in entry.iterdir() if f.is_file())
        if rank >= MAX_ENTRIES or (rank > 0 and total > MAX_TOTAL_BYTES):
            shutil.rmtree(entry, ignore_errors=True)
