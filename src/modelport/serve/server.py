"""Run the app with uvicorn until SIGTERM or Ctrl-C: stop accepting, answer every request
already accepted, stop the batchers, close the sessions, return 0 (a planned stop of a server
is its normal end, not the CLI's usual 143)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelport.serve.model import ServedModel
    from modelport.serve.options import ServeOptions

log = logging.getLogger("modelport")


def serve(models: list[ServedModel], options: ServeOptions, *, log_level: str = "warning",
          on_ready: Any = None) -> int:
    """Serve until stopped. ``on_ready(port)`` is called once the socket listens (the port the
    OS chose for ``port=0``)."""
    import uvicorn

    from modelport.serve.app import create_app

    app = create_app(models, options)
    config = uvicorn.Config(app, host=options.host, port=options.port, log_level=log_level,
                            access_log=False, lifespan="on", timeout_graceful_shutdown=None,
                            limit_concurrency=None, server_header=False)
    server = _make_server(config, on_ready)
    try:
        server.run()
    except SystemExit:  # uvicorn exits 1 when it cannot bind; say it as a user error
        server.started = False
    if not server.started:
        from modelport.errors import UsageError

        raise UsageError(f"cannot listen on {options.host}:{options.port} (in use, or not an "
                         "address of this machine): choose another --host/--port")
    return 0


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server whose signals end it gracefully without re-raising SIGTERM
        afterwards (uvicorn re-raises it, which would turn a clean stop into exit 143)."""

        def __init__(self, config: Any, on_ready: Any) -> None:
            super().__init__(config)
            self._on_ready = on_ready

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started and self._on_ready is not None:
                port = next((s.getsockname()[1] for srv in self.servers
                             for s in (srv.sockets or ())), self.config.port)
                self._on_ready(port)

        @contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server


def _make_server(config: Any, on_ready: Any) -> Any:
    return _server_class()(config, on_ready)
