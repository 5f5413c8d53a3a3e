"""The hub watching itself: event-loop stalls and store health, so that a stall of the hub
is never blamed on its nodes.

A hub that was stopped (SIGSTOP), swapped out or starved cannot read the heartbeats that
arrived meanwhile; they sit in its buffers. ``LoopMonitor`` notices such a stall (its own
timer fires late) and the silence watchdog of every stream then counts silence only from
the end of the stall: each stream gets a fresh grace instead of being closed as silent.

``StoreHealth`` keeps how the store answers the hub's transactions (failing since when, how
many in a row, the last success), for the metrics and the status file.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

log = logging.getLogger("cortexctl.hub")
TICK_S = 0.1
MAX_KEPT = 32


@dataclass(frozen=True)
class Stall:
    started: float  # time.monotonic()
    ended: float

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class LoopMonitor:
    """Measures the event loop's lag; a lag of ``threshold_s`` or more counts as a stall."""

    def __init__(self, threshold_s: float, tick_s: float = TICK_S) -> None:
        self.threshold_s = threshold_s
        self.tick_s = tick_s
        self.last_tick = time.monotonic()
        self.stalls: deque[Stall] = deque(maxlen=MAX_KEPT)
        self.stall_count = 0
        self.worst_lag_s = 0.0
        self.fresh_graces = 0  # streams spared after a stall, for metrics and tests

    async def run(self) -> None:
        self.last_tick = time.monotonic()
        while True:
            await asyncio.sleep(self.tick_s)
            self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        lag = now - self.last_tick - self.tick_s
        self.worst_lag_s = max(self.worst_lag_s, lag)
        if lag >= self.threshold_s:
            self.stalls.append(Stall(self.last_tick, now))
            self.stall_count += 1
            log.log(
                logging.WARNING if lag >= max(1.0, self.threshold_s) else logging.DEBUG,
                "the hub itself stalled for %.1fs (stopped, starved or overloaded); every "
                "stream gets a fresh grace before it can count as silent",
                lag,
            )
        self.last_tick = now

    def stalled_now(self) -> bool:
        """True while a stall is in progress that ``run`` has not seen end yet."""
        return time.monotonic() - self.last_tick - self.tick_s >= self.threshold_s

    def last_stall_end(self) -> float:
        """When the latest stall ended (monotonic), or 0.0 if none."""
        return self.stalls[-1].ended if self.stalls else 0.0

    def quiet_since(self, last_heard: float) -> float | None:
        """Seconds a peer heard at ``last_heard`` was silent while this hub was running,
        counted from the end of the latest stall; None while a stall is in progress."""
        if self.stalled_now():
            return None
        return time.monotonic() - max(last_heard, self.last_stall_end())


class StoreHealth:
    """How the store answered the hub's transactions, fed by ``StoreExecutor``.

    A transaction that commits, or that the store answers with a refusal of the work itself
    (not found, a conflict, fenced), is a success; a store that cannot be used (a driver
    error, a full disk, its deadline passed) is a failure. Thread-safe: the executor's
    workers report, the event loop and the metrics thread read.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.consecutive_failures = 0
        self.failures = 0  # all of them, for metrics
        self.failing_since: float | None = None  # time.monotonic() of the first in a row
        self.failing_since_unix: float | None = None
        self.last_success_unix: float | None = None
        self.last_error = ""

    def succeeded(self) -> None:
        with self._lock:
            self.consecutive_failures = 0
            self.failing_since = self.failing_since_unix = None
            self.last_success_unix = time.time()

    def failed(self, error: BaseException) -> None:
        with self._lock:
            self.consecutive_failures += 1
            self.failures += 1
            if self.failing_since is None:
                self.failing_since, self.failing_since_unix = time.monotonic(), time.time()
            self.last_error = str(error).splitlines()[0] if str(error) else type(error).__name__

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures == 0

    def failing_seconds(self) -> float:
        """How long the store has failed every transaction (0.0 while it works)."""
        since = self.failing_since
        return 0.0 if since is None else time.monotonic() - since

    def view(self) -> dict[str, object]:
        """For the status file: the store as this hub sees it."""
        return {
            "healthy": self.healthy,
            "failing_seconds": round(self.failing_seconds(), 3),
            "consecutive_failures": self.consecutive_failures,
            "last_success_unix": self.last_success_unix,
            "last_error": self.last_error if not self.healthy else "",
        }


class ConditionLog:
    """Logs a repeating failure once per condition, with a count, instead of every time."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what
        self.condition = ""
        self.count = 0

    def failed(self, condition: str, *, traceback: bool = False) -> None:
        if condition == self.condition:
            self.count += 1
            return
        if self.count:
            self.logger.warning(
                "%s: the previous failure repeated %d time(s): %s",
                self.what,
                self.count,
                self.condition,
            )
        self.condition, self.count = condition, 1
        self.logger.warning(
            "%s failed: %s (repeats are counted, not logged)",
            self.what,
            condition,
            exc_info=traceback,
        )

    def ok(self) -> None:
        if self.condition:
            self.logger.info(
                "%s works again after %d failure(s) (%s)", self.what, self.count, self.condition
            )
        self.condition, self.count = "", 0
