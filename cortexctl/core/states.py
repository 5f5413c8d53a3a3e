"""A task's states and the exit codes of a wait on one that ran to no exit of its own.

Plain names, no store: the remote CLI needs them as much as the journal does.
"""

from __future__ import annotations

from cortexctl.errors import (
    EXIT_TASK_CANCELLED,
    EXIT_TASK_EXPIRED,
    EXIT_TASK_REJECTED,
    EXIT_TASK_TIMED_OUT,
    InvalidArgument,
)

PENDING = "pending"
DISPATCHED = "dispatched"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
REJECTED = "rejected"
EXPIRED = "expired"  # queued and never sent to a node before its expiry
STATES = (PENDING, DISPATCHED, RUNNING, SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, REJECTED, EXPIRED)
ACTIVE = (PENDING, DISPATCHED, RUNNING)
IN_FLIGHT = (DISPATCHED, RUNNING)
TERMINAL = (SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, REJECTED, EXPIRED)

NO_EXIT_CODES = {
    TIMED_OUT: EXIT_TASK_TIMED_OUT,
    REJECTED: EXIT_TASK_REJECTED,
    CANCELLED: EXIT_TASK_CANCELLED,
    EXPIRED: EXIT_TASK_EXPIRED,
}


def check_expire_after(seconds: float | None) -> None:
    """A task's expiry is a positive duration, or none (checked before it goes anywhere)."""
    if seconds is not None and seconds <= 0:
        raise InvalidArgument("bad --expire-after: give a positive duration, e.g. 10m")
