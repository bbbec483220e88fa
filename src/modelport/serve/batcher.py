"""Dynamic batching: requests to one model that arrive within ``max_batch_delay_ms`` (or are
queued while the sessions are busy) are combined up to ``max_batch`` rows into one runtime
call, and the outputs are split back. One worker per session, so ``instances`` sessions run
that many calls at once; the runtime call runs in a thread, the event loop keeps serving."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from modelport.backends.base import Session
    from modelport.serve.metrics import ServeMetrics
    from modelport.serve.model import ServedModel
    from modelport.serve.options import ServeOptions

log = logging.getLogger("modelport")


@dataclass
class Job:
    """One request: tensor feeds to combine with others, or a call that runs alone."""

    future: asyncio.Future
    feeds: Mapping[str, np.ndarray] | None = None
    call: Callable[[Session], Any] | None = None
    key: Any = None
    rows: int = 1


class Batcher:
    def __init__(self, model: ServedModel, options: ServeOptions, metrics: ServeMetrics,
                 executor: ThreadPoolExecutor) -> None:
        self.model = model
        self.plan = model.plan
        self.max_batch = options.max_batch
        self.delay = options.max_batch_delay_ms / 1000.0
        self.metrics = metrics
        self.executor = executor
        self._pending: deque[Job] = deque()
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task] = []

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._worker(s), name=f"{self.model.name}-{i}")
                         for i, s in enumerate(self.model.sessions)]

    async def stop(self) -> None:
        """Finish what is queued, then stop the workers."""
        while self._pending:
            await asyncio.sleep(0.01)
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()

    # -- submitting ----------------------------------------------------------------------------
    async def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The outputs of these feeds (checked by the caller), run with whatever joins them."""
        job = Job(asyncio.get_running_loop().create_future(), feeds=feeds,
                  key=self.plan.key(feeds), rows=self.plan.rows(feeds))
        return await self._submit(job)

    async def run_alone(self, call: Callable[[Session], Any]) -> Any:
        """``call(session)`` on a free session, one request at a time (generation, predict)."""
        return await self._submit(Job(asyncio.get_running_loop().create_future(), call=call))

    async def _submit(self, job: Job) -> Any:
        self._pending.append(job)
        self._wake.set()
        return await job.future

    # -- the workers ---------------------------------------------------------------------------
    async def _worker(self, session: Session) -> None:
        while True:
            batch = await self._take()
            try:
                await self._run(session, batch)
            except Exception as exc:
                log.exception("serve: batch of %s failed", self.model.name)
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)

    async def _take(self) -> list[Job]:
        while not self._pending:
            self._wake.clear()
            await self._wake.wait()
        first = self._pending.popleft()
        batch, rows = [first], first.rows
        if first.key is None or self.max_batch <= 1:
            return batch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.delay
        while True:
            kept: deque[Job] = deque()
            while self._pending and rows < self.max_batch:
                job = self._pending.popleft()
                if job.key == first.key and rows + job.rows <= self.max_batch:
                    batch.append(job)
                    rows += job.rows
                else:
                    kept.append(job)
            self._pending.extendleft(reversed(kept))
            remaining = deadline - loop.time()
            if rows >= self.max_batch or remaining <= 0:
                return batch
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                pass

    async def _run(self, session: Session, batch: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        live = [job for job in batch if not job.future.done()]  # a client gone: skip it
        if not live:
            return
        if live[0].call is not None:
            job = live[0]
            self.metrics.batch(self.model.name, 1)
            try:
                job.future.set_result(await loop.run_in_executor(self.executor, job.call,
                                                                 session))
            except Exception as exc:  # noqa: BLE001 - handed to the request that made it
                _fail(job, exc)
            return
        feeds = [job.feeds for job in live]
        try:
            combined = self.plan.combine(feeds)
            outputs = await loop.run_in_executor(self.executor, session.infer, combined)
        except Exception as exc:  # noqa: BLE001 - one bad request must not fail the others
            if len(live) == 1:
                self.metrics.batch(self.model.name, live[0].rows)
                _fail(live[0], exc)
                return
            for job in live:  # run each alone: each gets its own answer or its own error
                await self._run(session, [job])
            return
        self.metrics.batch(self.model.name, sum(job.rows for job in live))
        for job, answer in zip(live, self.plan.split(feeds, outputs), strict=True):
            if not job.future.done():
                job.future.set_result(answer)


def _fail(job: Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)
