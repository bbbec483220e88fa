"""Every registered target, whether it can be built and run here, and why not."""

from __future__ import annotations

from typing import Any

from modelport import registry
from modelport.specs import Target


def list_targets() -> list[dict[str, Any]]:
    rows = []
    for name in registry.all_target_names():
        target = Target.parse(name)
        entry = registry.BACKENDS[target.runtime]
        try:
            backend = registry.get_backend(target.runtime)
            build = backend.availability(target)
            run = backend.runnable(target)
        except ImportError as exc:  # a broken backend module is reported, not hidden
            rows.append({"target": name, "available": "no", "why": f"backend failed to import: {exc}"})
            continue
        if build.ok and run.ok:
            available, why = "yes", entry.description
        elif build.ok:
            available, why = "build only", f"runs elsewhere: {run.reason}"
        else:
            available, why = "no", build.reason
        rows.append({"target": name, "available": available, "why": why})
    return rows
