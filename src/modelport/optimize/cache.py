"""A finished search, kept per model graph, target, objective, budget and CPU kind, so the next
export of the same model on the same kind of CPU builds the chosen recipe without timing every
candidate again.

``$MODELPORT_SEARCH_CACHE`` (a folder, or ``off``) overrides the place, which is otherwise
``search/`` in modelport's cache (``$MODELPORT_CACHE``, else ``~/.cache/modelport``). One JSON
file per key, written atomically; a file that cannot be read counts as a miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from modelport.errors import ModelportError

log = logging.getLogger("modelport")

#: bump when the candidates or what a record holds change: older entries stop matching
SEARCH_VERSION = 1
_OFF = ("0", "off", "false", "no")


def cache_dir() -> Path | None:
    given = os.environ.get("MODELPORT_SEARCH_CACHE")
    if given is not None and given.strip().lower() in _OFF:
        return None
    if given:
        return Path(given)
    from modelport.io import cache_root

    return cache_root() / "search"


def search_key(facts: dict[str, Any]) -> str:
    """sha256 of what decides the outcome (graph hash, target, objective, budget, CPU kind,
    options, runtime versions)."""
    text = json.dumps({"version": SEARCH_VERSION, **facts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def lookup(key: str) -> dict[str, Any] | None:
    root = cache_dir()
    if root is None:
        return None
    path = root / f"{key}.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("chosen") else None


def store(key: str, record: dict[str, Any]) -> None:
    root = cache_dir()
    if root is None:
        return
    from modelport.io import write_json_atomic

    try:
        root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(root / f"{key}.json", record)
    except (OSError, ModelportError) as exc:  # a cache that cannot be written costs the next run time, no more
        log.info("recipe search cache not written (%s): %s", root, exc)
