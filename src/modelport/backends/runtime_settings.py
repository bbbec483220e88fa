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
