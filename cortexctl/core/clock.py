"""Time in one place: wall-clock instants (aware UTC) for what is stored, and ``Deadline``
(the monotonic clock) for how long a piece of work may take."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def unix_ms(at: datetime | None = None) -> int:
    """An instant as the wire carries it, milliseconds since the epoch (``at`` None: now)."""
    return int((time.time() if at is None else at.timestamp()) * 1000)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, the form every --json output uses."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, order=True)
class Deadline:
    """The instant a piece of work must be done by, on ``time.monotonic()``.

    One value travels whole from where the limit is known (an RPC's own remaining time, a
    job's budget) through the hub's executor down to the store, which sets its lock and
    statement timeouts from it; every layer asks the same instant, so none needs slack for
    another's clock. (asyncio's loop clock is ``time.monotonic()`` too.)
    """

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    @classmethod
    def within(cls, remaining: float | None, cap: float) -> Deadline:
        """An RPC's deadline: what its caller left (``context.time_remaining()``, None if it
        set none), but never later than ``cap`` seconds from now."""
        return cls.after(cap if remaining is None else min(remaining, cap))

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - time.monotonic()

    def remaining_ms(self) -> int:
        """Whole milliseconds left, rounded up, at least 1: a database timeout set from it
        fires no earlier than the deadline itself (0 would mean "no timeout")."""
        return max(1, math.ceil(self.remaining() * 1000))

    def passed(self) -> bool:
        return time.monotonic() >= self.at


Pause = Callable[[float], object]
"""Sleeps until something may have changed, for at most the seconds given (``math.inf``:
no deadline). The default is ``fixed_interval``; a wake-up on a change (PostgreSQL's
LISTEN/NOTIFY, SQLite's data_version) plugs in as another ``Pause``."""


def fixed_interval(interval_s: float) -> Pause:
    """Sleep the interval, or less near a deadline."""

    def pause(at_most_s: float) -> None:
        time.sleep(max(0.0, min(interval_s, at_most_s)))

    return pause


def poll_until(done: Callable[[], bool], *, deadline: Deadline | None, pause: Pause) -> bool:
    """Ask ``done()`` until it says True (return True) or ``deadline`` passes (False),
    pausing between asks; it is asked once more after the last pause."""
    while True:
        if done():
            return True
        if deadline is not None and deadline.passed():
            return False
        pause(math.inf if deadline is None else deadline.remaining())
