"""Runtime settings a bundle was measured with (threads, streams, hints, graph level) and that
its backend's ``load`` re-applies: chosen by the recipe search (``modelport.optimize``) and
stored in the manifest as ``build.runtime_settings``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def runtime_settings(options: Mapping[str, Any]) -> dict[str, Any]:
    """The settings to load with: given ones (right after a build, ``runtime_settings`` in
    ``Artifact.session_options``), else the bundle's ``build.runtime_settings``, else none.
    An argument the caller passes to ``load`` (``threads=``, ``streams=``) wins over both."""
    given = options.get("runtime_settings")
    if given is None and options.get("bundle") is not None:
        given = (options["bundle"].manifest.get("build") or {}).get("runtime_settings")
    return dict(given) if isinstance(given, Mapping) else {}


def threads_of_rule(rule: Any) -> int | None:
    """The intra-op thread count a ``thread_rule`` setting names on this machine, or None (the
    runtime's default). ``"half"``: one thread per two logical cores, at least one
    (onnxruntime-genai's rule for its CPU sessions): LM decode runs hundreds of small kernels a
    step, and on a 2-core machine shared with other work one thread beat two (ORT LM bundles,
    docs/language-models.md)."""
    if rule != "half":
        return None
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // 2)
