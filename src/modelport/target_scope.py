"""Which targets a generative task (a KV-cache LM, an encoder-decoder) can run.

A task module gives ``refusal(target) -> why | None``; the export refuses the first target
with a reason before any work (``refuse``), and ``bench MODEL --targets all`` (or a device)
keeps the targets that apply and reports the others as skipped rows with the reason
(``split``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from modelport.errors import UnknownTarget

log = logging.getLogger("modelport")

Refusal = Callable[[Any], "str | None"]


def refuse(targets: list[Any], refusal: Refusal, what: str) -> None:
    """One line with why for the first target ``refusal`` refuses: ``{target}: {what} ...``."""
    for target in targets:
        why = refusal(target)
        if why is not None:
            raise UnknownTarget(f"{target}: {what} {why}")


def split(targets: list[Any], refusal: Refusal, what: str
          ) -> tuple[list[Any], list[dict[str, Any]]]:
    """(the targets that apply, report rows for the others: ``not for {what}: why``)."""
    from modelport.bench import statuses

    kept, skipped, reasons = [], [], {}
    for target in targets:
        why = refusal(target)
        if why is None:
            kept.append(target)
            continue
        skipped.append({"target": str(target), "precision": str(target.precision),
                        "status": statuses.UNAVAILABLE, "available": False,
                        "reason": f"not for {what}: {why}"})
        reasons.setdefault(why, []).append(str(target))
    if skipped:
        log.warning("skipped %d target(s) that do not apply to %s: %s", len(skipped), what,
                    "; ".join(f"{', '.join(names)} ({why})" for why, names in reasons.items()))
    return kept, skipped
