"""Peak memory per target, not per process.

``ru_maxrss`` only grows, so in a run that measures several targets every later target would
inherit the largest earlier peak. Linux lets a process reset its own peak (``VmHWM``) by
writing 5 to ``/proc/self/clear_refs``; the export resets it before loading each target, so
``peak_rss_mb`` is that target's load + benchmark peak. Where the reset is not possible the
process-wide maximum is reported and says so (``peak_rss_scope``).
"""

from __future__ import annotations

import resource
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak() -> bool:
    """Start a new peak-RSS window; False when this OS cannot (the peak stays process-wide)."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> tuple[float, str]:
    """(peak RSS in MB since the last reset, scope): scope is 'since reset' or 'process'."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0, "window"
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "process"


def current_rss_mb() -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None
