"""What a server is started with (the `modelport serve` flags as one typed object)."""

from __future__ import annotations

from dataclasses import dataclass

from modelport.errors import UsageError

#: the largest request body taken by default (a 64 MiB tensor payload)
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ServeOptions:
    """``host``/``port``: where to listen (loopback unless told otherwise).
    ``max_batch``: rows one runtime call takes when requests are combined (1: no batching).
    ``max_batch_delay_ms``: how long a batch waits for more requests once it has one (0: it
    takes what is queued already, so a lone request never waits).
    ``instances``: runtime sessions per model running at once.
    ``max_request_bytes``: a larger body is refused with 413 before it is read.
    ``threads``: runtime threads per session (None: the runtime's default, divided among
    instances)."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 8
    max_batch_delay_ms: float = 0.0
    instances: int = 1
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    threads: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise UsageError(f"--port must be 0..65535, got {self.port}")
        if self.max_batch < 1:
            raise UsageError(f"--max-batch must be at least 1, got {self.max_batch}")
        if self.max_batch_delay_ms < 0:
            raise UsageError(f"--max-batch-delay-ms must be >= 0, got {self.max_batch_delay_ms}")
        if self.instances < 1:
            raise UsageError(f"--instances must be at least 1, got {self.instances}")
        if self.max_request_bytes < 1024:
            raise UsageError(f"the request-size limit must be at least 1 KiB, got "
                             f"{self.max_request_bytes} bytes")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be at least 1, got {self.threads}")

    def session_threads(self) -> int | None:
        """Threads each session gets: --threads, or the cores shared among the instances."""
        if self.threads is not None or self.instances == 1:
            return self.threads
        import os

        return max(1, (os.cpu_count() or 1) // self.instances)
