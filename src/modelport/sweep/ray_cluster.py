"""Ray, imported lazily, and what the sweep reads from the cluster: devices, nodes, CPUs."""

from __future__ import annotations

import time
from typing import Any

from modelport.errors import MissingDependency, UsageError

DEVICE_PREFIX = "device:"
BUILD_RESOURCE = "modelport-build"
#: how long --ray waits for the head's port to answer before the one-line refusal
REACH_WAIT_S = 5.0


def import_ray() -> Any:
    """``ray``, or the one line that says how to install it."""
    try:
        import ray
    except ImportError:
        raise MissingDependency('sweeps on a cluster need Ray: pip install "modelport[ray]"'
                                ) from None
    return ray


def check_reachable(address: str, *, wait_s: float = REACH_WAIT_S) -> None:
    """Refuse, in seconds, an address where nothing listens (``ray.init`` would wait there
    for minutes without a word). ``auto`` / ``local`` are Ray's to resolve; a head that is
    still starting gets ``wait_s`` seconds to open its port."""
    import socket

    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UsageError(f"--ray takes HEAD:PORT (e.g. 10.0.0.5:6379) or ray://HEAD:PORT, got "
                         f"'{address}'")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
                return
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
        if time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    raise UsageError(f"cannot reach the Ray cluster at '{address}': nothing answers on "
                     f"{host}:{port} ({why}, tried for {wait_s:.0f} s); start one with "
                     "`ray start --head`, then give its HEAD:PORT")


def connect(ray: Any, address: str) -> None:
    """Join the cluster as a driver; its workers' output stays on their nodes."""
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"cannot reach the Ray cluster at '{address}': {exc} (start one with "
                         "`ray start --head`, then give its HEAD:PORT)") from None


def alive_nodes(ray: Any) -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n.get("Alive")]


def device_nodes(ray: Any) -> dict[str, dict[str, Any]]:
    """device name -> the (first) live node offering ``device:NAME``."""
    found: dict[str, dict[str, Any]] = {}
    for node in alive_nodes(ray):
        for key in node.get("Resources", {}):
            if key.startswith(DEVICE_PREFIX):
                found.setdefault(key.removeprefix(DEVICE_PREFIX), node)
    return found


def check_devices(ray: Any, wanted: list[str], address: str) -> dict[str, dict[str, Any]]:
    """Refuse, at once, a device no node offers: one line naming the ones that exist."""
    offered = device_nodes(ray)
    missing = [d for d in wanted if d not in offered]
    if missing:
        have = ", ".join(sorted(offered)) or "none"
        raise UsageError(
            f"no node of the cluster at {address} offers device(s) {', '.join(missing)}; it "
            f"offers: {have} (a device joins with `ray start --address={address} "
            f"--resources='{{\"device:NAME\": 1}}'`)")
    return {d: offered[d] for d in wanted}


def node_cpus(node: dict[str, Any]) -> int:
    """All of a node's CPUs as Ray counts them: a bench asks for every one, so it runs alone."""
    return int(node.get("Resources", {}).get("CPU", 0))  # 0: a node started with no CPUs


def has_build_nodes(ray: Any) -> bool:
    return any(BUILD_RESOURCE in n.get("Resources", {}) for n in alive_nodes(ray))


def pinned(ray: Any, node_id: str, *, soft: bool = False) -> Any:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=soft)
