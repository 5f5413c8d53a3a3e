"""Group commit: callers that arrive together share one store transaction.

While a batch is in the store, new callers queue; the next batch takes all of them (up to
``max_batch``). A lone caller goes straight through (a batch of one), so nothing waits
for a timer; under a storm, batches grow by themselves and the store sees one
transaction per batch instead of one per caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from cortexctl.errors import CortexError
from cortexctl.hub.executor import StoreExecutor

Req = TypeVar("Req")
Res = TypeVar("Res")


class Batcher(Generic[Req, Res]):
    """Run ``fn(session, requests) -> [result or CortexError]`` for queued requests."""

    def __init__(
        self,
        executor: StoreExecutor,
        fn: Callable[..., Sequence[Res | CortexError]],
        *,
        what: str,
        timeout_s: float,
        max_batch: int = 256,
        **kwargs: Any,
    ) -> None:
        self.executor = executor
        self.fn = fn
        self.what = what
        self.timeout_s = timeout_s
        self.max_batch = max_batch
        self.kwargs = kwargs
        self._queue: list[tuple[Req, asyncio.Future[Res]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    async def submit(self, request: Req) -> Res:
        """This request's result, or its error raised; cancelling gives up the wait only."""
        future: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name=f"batch-{self.what}")
        return await future

    async def _run(self) -> None:
        while self._queue:
            batch = [(r, f) for r, f in self._queue[: self.max_batch] if not f.done()]
            del self._queue[: self.max_batch]
            if not batch:
                continue
            self.batches += 1
            self.items += len(batch)
            try:
                results = await self.executor.session(
                    self.fn,
                    [request for request, _ in batch],
                    write=True,
                    timeout=self.timeout_s,
                    wait_turn=True,
                    **self.kwargs,
                )
            except asyncio.CancelledError:
                for _, future in batch:
                    if not future.done():
                        future.cancel()
                raise
            except BaseException as err:  # the whole batch failed: each caller hears why
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue  # its caller gave up
                if isinstance(result, CortexError):
                    future.set_exception(result)
                else:
                    future.set_result(result)
