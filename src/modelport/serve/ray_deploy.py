"""`modelport serve BUNDLE --ray ADDR`: the same Open Inference Protocol app as Ray Serve
replicas across a cluster's nodes.

Each replica opens the bundles itself (every node needs them at the same absolute path, as the
sweep's nodes share a checkout) and serves ``create_app``'s app through Ray Serve's HTTP proxy
at ``--host``/``--port``, route prefix ``/``: the endpoint and protocol are the ones `serve`
answers on. Batching stays the server's own (``--max-batch``/``--max-batch-delay-ms``, inside
each replica: it pads texts of different lengths, which Ray's ``@serve.batch`` cannot); Ray
Serve decides how many replicas run (``--replicas`` or ``--autoscale MIN:MAX`` with
``--target-ongoing-requests``) and how many requests one replica takes at once
(``--max-ongoing-requests``). Every answer names its replica in a ``modelport-replica``
header (node id / replica id), so a client can tell who answered.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.errors import MissingDependency, RuntimeFailure, UsageError

log = logging.getLogger("modelport")
REPLICA_HEADER = b"modelport-replica"
#: Ray Serve's proxy placements (its ProxyLocation names)
PROXY_LOCATIONS = ("HeadOnly", "EveryNode")


@dataclass(frozen=True)
class RayServeOptions:
    """How the app is deployed on the cluster (the `serve --ray` flags)."""

    address: str
    replicas: int = 1
    autoscale: tuple[int, int] | None = None  # (min, max) replicas: Ray Serve autoscaling
    target_ongoing_requests: float = 2.0  # autoscaling aims at this many requests per replica
    max_ongoing_requests: int = 32  # requests one replica takes at once (the rest queue)
    replica_cpus: float = 1.0  # Ray CPUs each replica reserves
    max_replicas_per_node: int | None = None
    proxy_location: str = "HeadOnly"
    app_name: str = "modelport"

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise UsageError(f"--replicas must be at least 1, got {self.replicas}")
        if self.autoscale is not None and not 0 <= self.autoscale[0] <= self.autoscale[1] \
                or self.autoscale is not None and self.autoscale[1] < 1:
            raise UsageError("--autoscale takes MIN:MAX replicas with 0 <= MIN <= MAX, MAX >= 1")
        if self.max_ongoing_requests < 1 or self.target_ongoing_requests <= 0:
            raise UsageError("--max-ongoing-requests must be at least 1 and "
                             "--target-ongoing-requests positive")
        if self.replica_cpus < 0:
            raise UsageError("--replica-cpus must be at least 0")
        if self.proxy_location not in PROXY_LOCATIONS:
            raise UsageError(f"--proxy-location takes {' or '.join(PROXY_LOCATIONS)}")

    def deployment_options(self) -> dict[str, Any]:
        """Ray Serve's ``@serve.deployment`` arguments."""
        opts: dict[str, Any] = {"max_ongoing_requests": self.max_ongoing_requests,
                                "ray_actor_options": {"num_cpus": self.replica_cpus}}
        if self.max_replicas_per_node is not None:
            opts["max_replicas_per_node"] = self.max_replicas_per_node
        if self.autoscale is None:
            opts["num_replicas"] = self.replicas
        else:
            low, high = self.autoscale
            opts["autoscaling_config"] = {
                "min_replicas": low, "max_replicas": high,
                "initial_replicas": min(max(self.replicas, low), high),
                "target_ongoing_requests": self.target_ongoing_requests}
        return opts


def parse_autoscale(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    low, sep, high = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(low), int(high)
    except ValueError:
        raise UsageError(f"--autoscale takes MIN:MAX replicas like 1:4, got '{text}'") from None


def bundle_args(paths: Sequence[str | Path], names: Sequence[str]) -> tuple[list[str], list[str]]:
    """The bundles as absolute paths (a replica's working folder is not the driver's), each
    opened and checksummed here first, so a wrong path is one line before anything deploys."""
    from modelport.bundle import open_bundle
    from modelport.serve.names import parse_name_flags

    named = [f"{name}={Path(path).resolve()}" for path, name in parse_name_flags(names)]
    resolved = [str(Path(p).resolve()) for p in paths]
    for path in [*resolved, *(n.split("=", 1)[1] for n in named)]:
        open_bundle(path)
    if not resolved and not named:
        raise UsageError("give at least one BUNDLE to serve")
    return resolved, named


def replica_class() -> type:
    """The deployment class: opens the bundles in the replica, then hands Ray Serve the app."""
    from ray import serve

    class ModelportReplica:
        def __init__(self, paths: list[str], names: list[str], options: Any) -> None:
            from modelport.serve.model import open_models

            self._models = open_models(paths, names, options)
            self._options = options

        def __serve_build_asgi_app__(self) -> Any:
            from modelport.serve.app import create_app

            return TaggedApp(create_app(self._models, self._options), replica_tag())

    return serve.ingress()(ModelportReplica)


def replica_tag() -> str:
    """``<node id>/<replica id>`` of the replica this runs in."""
    import ray
    from ray import serve

    node = ray.get_runtime_context().get_node_id()
    try:
        replica = serve.get_replica_context().replica_id.unique_id
    except (AttributeError, RuntimeError):
        replica = "?"
    return f"{node}/{replica}"


class TaggedApp:
    """The ASGI app with a ``modelport-replica`` response header; everything else (lifespan,
    FastAPI's add_exception_handler, which Ray Serve calls) goes to the app itself."""

    def __init__(self, app: Any, tag: str) -> None:
        self._app, self._tag = app, tag.encode()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http":
            await self._app(scope, receive, send)
            return

        async def tagged(message: dict) -> None:
            if message.get("type") == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (REPLICA_HEADER, self._tag)]}
            await send(message)
        await self._app(scope, receive, tagged)


def serve_on_ray(paths: Sequence[str | Path], names: Sequence[str], options: Any,
                 ray_options: RayServeOptions, *, on_ready: Callable[[str], None] | None = None,
                 stop: threading.Event | None = None) -> int:
    """Deploy, say where it answers, and wait until Ctrl-C / SIGTERM (or ``stop``); then delete
    the application (its replicas finish the requests they hold) and return 0."""
    resolved, named = bundle_args(paths, names)
    try:
        import ray
        from ray import serve
    except ImportError:
        raise MissingDependency('serving on Ray needs Ray Serve: pip install '
                                '"modelport[ray-serve]"') from None
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        ray.init(address=ray_options.address, logging_level="ERROR", log_to_driver=False,
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"cannot reach the Ray cluster at '{ray_options.address}': {exc} "
                         "(start one with `ray start --head`, then give its HEAD:PORT)") from None
    finally:
        for sig, handler in handlers.items():  # Ray's own handler would kill us on SIGTERM
            signal.signal(sig, handler)
    deployed = False
    try:
        serve.start(http_options={"host": options.host, "port": options.port},
                    proxy_location=ray_options.proxy_location)
        deployment = serve.deployment(name="modelport", **ray_options.deployment_options())
        app = deployment(replica_class()).bind(resolved, named, options)
        deployed = True  # from here on, whatever happens, the application is deleted
        try:
            serve.run(app, name=ray_options.app_name, route_prefix="/", blocking=False)
        except RuntimeError as exc:  # a replica failed to start: Ray's message says why
            raise RuntimeFailure(f"Ray Serve could not start the replicas: "
                                 f"{str(exc).strip().splitlines()[-1][:500]}") from None
        if on_ready is not None:
            on_ready(f"http://{options.host}:{options.port}")
        stop = stop or threading.Event()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:  # SIGTERM or Ctrl-C: a planned stop, as `serve` treats it
            log.info("stopping: deleting the Ray Serve application")
        return 0
    finally:
        if deployed:  # its replicas finish the requests they hold, then end
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                serve.delete(ray_options.app_name)
            except Exception as exc:  # noqa: BLE001 - the cluster went away: nothing to delete
                log.warning("could not delete the Ray Serve application: %s", exc)
        ray.shutdown()
