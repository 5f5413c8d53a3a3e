"""The one bounded executor through which the hub's async code reaches the store and disk.

Nothing that can stall (a database call, a file write) runs on the event loop. Each call
has a deadline: past it the caller gets UNAVAILABLE while the worker finishes on its own;
a full queue answers UNAVAILABLE at once instead of piling up work — except for callers
that ask to wait their turn (stream opens in a reconnect storm): they wait, within their
deadline, for a free place in the queue, first come first served.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from cortexctl.core.clock import Deadline
from cortexctl.errors import Fenced, StoreFull, Unavailable
from cortexctl.hub.stalls import StoreHealth
from cortexctl.store.engine import Store

T = TypeVar("T")


class _RpcContext(Protocol):
    def time_remaining(self) -> float | None: ...


def rpc_deadline(context: _RpcContext, cap_s: float) -> Deadline:
    """The deadline of an RPC's store work: the time its caller has left
    (``context.time_remaining()``), never more than ``cap_s``. A servicer passes it whole
    to ``run``/``session``."""
    return Deadline.within(context.time_remaining(), cap_s)


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
        self._turns: collections.deque[asyncio.Future[None]] = collections.deque()
        self.waited = 0  # calls that waited their turn for a place, for metrics and tests
        # Told when a store call finds this hub fenced (another hub took it over).
        self.fence_observers: list[Callable[[Fenced], None]] = []
        self.health = StoreHealth()  # how the store answers ``session`` calls
        # Called on the worker thread when a transaction meets a full disk (StoreFull).
        self.full_observers: list[Callable[[StoreFull], object]] = []

    def deadline(self, timeout: float | None = None, deadline: Deadline | None = None) -> Deadline:
        """The one deadline of a call: the one given, else ``timeout`` seconds from now."""
        if deadline is not None:
            return deadline
        return Deadline.after(timeout or self.default_timeout)

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        timeout: float | None = None,
        deadline: Deadline | None = None,
        what: str = "the store",
        wait_turn: bool = False,
    ) -> T:
        """Run ``fn(*args)`` on a worker thread; UNAVAILABLE once the deadline passes
        (``deadline``, else ``timeout`` seconds from now, else the default). A full queue
        refuses at once, unless ``wait_turn``: then the call waits for a place."""
        due = self.deadline(timeout, deadline)
        loop = asyncio.get_running_loop()
        if wait_turn and (self.queued >= self.max_queue or self._turns):
            await self._wait_turn(loop, due, what)  # the place it got is counted already
        elif self.queued >= self.max_queue:
            raise Unavailable(
                f"the hub is overloaded ({self.queued} store calls queued); retry shortly"
            )
        else:
            self.queued += 1
        context = contextvars.copy_context()
        started = time.monotonic()
        future = loop.run_in_executor(self._pool, context.run, fn, *args)
        future.add_done_callback(lambda done: self._done(started, done))
        try:
            # The loop's clock is time.monotonic(), the deadline's own clock.
            async with asyncio.timeout_at(due.at):
                return await asyncio.shield(future)
        except TimeoutError:
            raise Unavailable(
                f"{what} did not answer within {due.at - started:.3g}s; retry shortly"
            ) from None

    async def _wait_turn(self, loop: asyncio.AbstractEventLoop, due: Deadline, what: str) -> None:
        """Wait, first come first served, until the queue has a place (or ``due`` passes)."""
        turn: asyncio.Future[None] = loop.create_future()
        self._turns.append(turn)
        self.waited += 1
        self._give_turns()
        try:
            async with asyncio.timeout_at(due.at):
                await turn
        except BaseException as err:
            if turn.done() and not turn.cancelled():
                self.queued -= 1  # given a place it will not use: hand it on
                self._give_turns()
            else:
                turn.cancel()
                with contextlib.suppress(ValueError):
                    self._turns.remove(turn)
            if isinstance(err, TimeoutError):
                raise Unavailable(
                    f"{what} had no place in the hub's store queue in time "
                    f"({self.queued} calls queued); retry shortly"
                ) from None
            raise

    def _give_turns(self) -> None:
        # A place is handed over by counting it as queued at once, so no other caller
        # takes it between the wake-up and the submission.
        while self._turns and self.queued < self.max_queue:
            turn = self._turns.popleft()
            if not turn.done():
                self.queued += 1
                turn.set_result(None)

    def _done(self, started: float, future: asyncio.Future[Any]) -> None:
        # A caller that gave up (deadline, cancel) no longer awaits the result; retrieve the
        # exception here so it is not reported as "never retrieved".
        if not future.cancelled():
            future.exception()
        self.queued -= 1
        self._give_turns()
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
        deadline: Deadline | None = None,
        wait_turn: bool = False,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(session, *args, **kwargs)`` in its own transaction on a worker thread;
        the store's timeouts come from the same deadline as the wait for the worker."""
        due = self.deadline(timeout, deadline)

        def in_session() -> T:
            try:
                with self.store.session(write=write, deadline=due) as session:
                    result = fn(session, *args, **kwargs)
            except Fenced:
                self.health.succeeded()  # the store answered: this hub was taken over
                raise
            except StoreFull as err:
                self.health.failed(err)
                for notice in self.full_observers:
                    notice(err)
                raise
            except Unavailable as err:  # a driver error, or the store past the deadline
                self.health.failed(err)
                raise
            except Exception:
                self.health.succeeded()  # the store answered; the work itself was refused
                raise
            self.health.succeeded()
            return result

        try:
            return await self.run(in_session, deadline=due, wait_turn=wait_turn)
        except Fenced as err:
            for notice in self.fence_observers:
                notice(err)
            raise

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
