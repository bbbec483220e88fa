"""What tasks send back: plain dataclasses of bytes and JSON-able dicts (no live objects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelport.sweep.payload import Payload


@dataclass(frozen=True)
class BundleBlob:
    """A packed bundle (``modelport pack`` bytes) and the sha256 the receiver checks."""

    target: str
    file_name: str
    sha256: str
    data: bytes


@dataclass
class BuildOutcome:
    """One build: the export rows, a blob per bundle, and the model the torch row runs."""

    key: str
    rows: list[dict[str, Any]]
    bundles: dict[str, BundleBlob] = field(default_factory=dict)
    #: what the torch reference is run from on a device (a recipe's compressed folder)
    reference_model: Payload | None = None
    node_id: str | None = None
    cpu_kind: str | None = None
    error: str | None = None  # the whole build failed (e.g. the model does not load)
    seconds: float | None = None
    cached: bool = False
    #: --optimize: target -> its candidate bundles within budget, to be timed on a device of
    #: the build's CPU kind (sweep/search_task.py); empty once the winners replaced ``bundles``
    candidates: dict[str, list[BundleBlob]] = field(default_factory=dict)

    def row(self, target: str) -> dict[str, Any] | None:
        return next((r for r in self.rows if r.get("target") == target), None)


@dataclass
class BenchOutcome:
    """One bundle (or the torch reference) timed on one device."""

    device: str
    row: dict[str, Any]
    node_id: str | None = None
    fingerprint: dict[str, Any] | None = None
    model: dict[str, Any] | None = None  # name, source, task from the bundle's manifest
