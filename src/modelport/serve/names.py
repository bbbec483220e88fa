"""``--name NAME=BUNDLE`` of serve, serve --ray and triton-repo: one parser, one rule for a
bundle given both plainly and by name (served once, under the name)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from modelport.errors import UsageError


def parse_name_flags(items: Sequence[str]) -> list[tuple[str, str]]:
    """``NAME=BUNDLE`` flags as (bundle, name) pairs."""
    out = []
    for item in items:
        name, sep, bundle = item.partition("=")
        if not sep or not name.strip() or not bundle.strip():
            raise UsageError(f"--name takes NAME=BUNDLE (like --name minilm=out/onnxruntime-cpu-"
                             f"fp32); got '{item}'")
        out.append((bundle.strip(), name.strip()))
    return out


def bundles_with_names(paths: Sequence[str | Path], items: Sequence[str]
                       ) -> list[tuple[str, str | None]]:
    """Every bundle once as (path, name or None): the plain ones in their order, then the named
    ones not given plainly; a bundle given both ways takes its name."""
    named = parse_name_flags(items)
    by_path = {Path(b).resolve(): name for b, name in named}
    out: list[tuple[str, str | None]] = []
    for p in paths:
        out.append((str(p), by_path.pop(Path(p).resolve(), None)))
    out += [(b, name) for b, name in named if Path(b).resolve() in by_path]
    return out
