"""One line per finished task, an overall bar, and (optionally) a JSON-lines event log.

The event log (``--events FILE``) is for scripts and tests that must react to a sweep's progress
(e.g. "the first build finished") without parsing the terminal or sleeping.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


class Progress:
    def __init__(self, total: int, *, quiet: bool = False, events: Path | None = None) -> None:
        from tqdm import tqdm

        self.quiet = quiet
        self.events = Path(events) if events else None
        self.bar = tqdm(total=total, desc="sweep", unit="task", file=sys.stderr,
                        disable=quiet or None, leave=False)

    def add(self, n: int) -> None:
        """More tasks than planned (benches are known once builds finish)."""
        self.bar.total = (self.bar.total or 0) + n
        self.bar.refresh()

    def done(self, kind: str, what: str, status: str, **info: Any) -> None:
        """A task finished: print its line, advance the bar, append the event."""
        detail = ", ".join(f"{k} {v}" for k, v in info.items() if v is not None and k != "node")
        node = info.get("node")
        line = f"{kind} {what}" + (f" on node {node[:8]}" if node else "") + f": {status}" + \
            (f" ({detail})" if detail else "")
        if not self.quiet:
            self.bar.write(line, file=sys.stderr)
        self.bar.update(1)
        self.event(kind, what=what, status=status, **info)

    def event(self, kind: str, **info: Any) -> None:
        if self.events is None:
            return
        with open(self.events, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"event": kind, "time": round(time.time(), 3), **info},
                                default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def close(self) -> None:
        self.bar.close()
