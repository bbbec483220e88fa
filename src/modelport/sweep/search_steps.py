"""``sweep --optimize``: what both runners (here and on Ray) do between a build and its benches.

A build with candidates (``BuildOutcome.candidates``) is timed on one device of its CPU kind
(``search_task.search_blobs``): the devices of one kind share a build, so they share its
timing too and every one of them gets the same winner, the one for its kind, as the search
cache (keyed by CPU kind) would give it. The first device of the kind in ``--devices`` order
times it. Its winners replace the default bundles, their records go to the build rows (and
from there to every device row), the build is cached only then, and each record goes to the
search cache (``optimize/cache.py``) under the key the build node computed.
"""

from __future__ import annotations

import logging
from typing import Any

from modelport.sweep.outcomes import BuildOutcome
from modelport.sweep.state import DeviceInfo

log = logging.getLogger("modelport")


def wants_search(outcome: BuildOutcome) -> bool:
    return outcome.error is None and bool(outcome.candidates)


def searcher(devices: list[DeviceInfo], kind: str) -> DeviceInfo | None:
    """The device that times a build's candidates: the first live one of the build's kind."""
    return next((d for d in devices if d.cpu_kind == kind and d.probe and not d.lost), None)


def search_args(outcome: BuildOutcome) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(candidates, the build's records, the default bundles) of every searched target."""
    targets = list(outcome.candidates)
    return (dict(outcome.candidates),
            {t: (outcome.row(t) or {}).get("search") or {} for t in targets},
            {t: outcome.bundles[t] for t in targets})


def apply_search(outcome: BuildOutcome, got: dict[str, Any] | None, device: str,
                 failure: str | None = None) -> list[str]:
    """Put the device's winners in place of the default bundles; returns one line per target
    (for the progress line). A target whose timing failed ships modelport's default recipe,
    and its record says why."""
    from modelport.optimize import cache

    lines = []
    results = (got or {}).get("targets") or {}
    for target in list(outcome.candidates):
        row = outcome.row(target) or {}
        res = results.get(target) or {"error": failure or "no result came back"}
        if "blob" in res:
            record = res["record"]
            outcome.bundles[target] = res["blob"]
            row["search"] = record
            if record.get("key") and not record.get("cut_short"):
                cache.store(record["key"], record)
            lines.append(f"{target}: '{record['chosen']}'"
                         + (f" with {_settings(record['runtime_settings'])}"
                            if record["runtime_settings"] else ""))
        else:
            note = f"not timed on {device} ({res['error']}): modelport's default recipe ships"
            row["search"] = {**(row.get("search") or {}), "note": note, "pending": False}
            log.warning("%s: --optimize: %s", target, note)
            lines.append(f"{target}: {note}")
    outcome.candidates = {}
    return lines


def _settings(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in settings.items())
