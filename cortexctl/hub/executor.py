"""The one bounded executor through which the hub's async code reaches the store and disk.

Nothing that can stall (a database call, a file write) runs on the event loop. Each call
has a deadline: past it the caller gets UNAVAILABLE while the worker finishes on its own;
a full queue answers UNAVAILABLE at once instead of piling up work.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from cortexctl.errors import Unavailable
from cortexctl.store.engine import Store

T = TypeVar("T")


class StoreExecutor:
    def __init__(
        self,
        store: Store,
        *,
        workers: int = 8,
        max_queue: int = 1024,
        default_timeout: float = 10.0,
    ) -> None:
        self.store = store
        self.max_queue = max_queue
        self.default_timeout = default_timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="store")
        self.queued = 0  # submitted and not yet finished, for metrics and back-pressure
        self.calls = 0
        self.total_latency_s = 0.0
        self.observers: list[Callable[[float], None]] = []

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        timeout: float | None = None,
        what: str = "the store",
    ) -> T:
        """Run ``fn(*args)`` on a worker thread; UNAVAILABLE past ``timeout`` seconds."""
        if self.queued >= self.max_queue:
            raise Unavailable(
                f"the hub is overloaded ({self.queued} store calls queued); retry shortly"
            )
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        started = time.monotonic()
        self.queued += 1
        future = loop.run_in_executor(self._pool, context.run, fn, *args)
        future.add_done_callback(lambda done: self._done(started, done))
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout or self.default_timeout)
        except TimeoutError:
            raise Unavailable(
                f"{what} did not answer within {timeout or self.default_timeout:g}s; retry shortly"
            ) from None

    def _done(self, started: float, future: asyncio.Future[Any]) -> None:
        # A caller that gave up (deadline, cancel) no longer awaits the result; retrieve the
        # exception here so it is not reported as "never retrieved".
        if not future.cancelled():
            future.exception()
        self.queued -= 1
        elapsed = time.monotonic() - started
        self.calls += 1
        self.total_latency_s += elapsed
        for observe in self.observers:
            observe(elapsed)

    async def session(
        self,
        fn: Callable[..., T],
        *args: Any,
        write: bool = False,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(session, *args, **kwargs)`` in its own transaction on a worker thread."""

        deadline = time.monotonic() + (timeout or self.default_timeout)

        def in_session() -> T:
            with self.store.session(write=write, deadline=deadline) as session:
                return fn(session, *args, **kwargs)

        return await self.run(in_session, timeout=timeout)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
