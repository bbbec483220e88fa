"""What the driver knows as a sweep runs: the devices it probed and the rows so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DeviceInfo:
    """A device as its probe saw it."""

    name: str
    probe: dict[str, Any]
    cpu_kind: str
    cpus: int | None = None
    node_id: str | None = None  # the Ray node offering the device (None when local)
    lost: bool = False  # its node died during the sweep

    @property
    def has_torch(self) -> bool:
        return "export" in self.probe.get("extras", [])


@dataclass
class SweepResults:
    """Rows as tasks finish: (device, build key, target) -> row; model info as it arrives."""

    rows: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    nodes: dict[str, set[str]] = field(default_factory=dict)  # device -> Ray nodes it ran on
    model: dict[str, Any] = field(default_factory=dict)

    def put(self, device: str, key: str, target: str, row: dict[str, Any],
            node_id: str | None = None) -> None:
        self.rows[(device, key, target)] = row
        if node_id:
            self.nodes.setdefault(device, set()).add(node_id)
