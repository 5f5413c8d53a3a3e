"""SyncLockRegistry: one lock per (node, path) for file uploads, that never leaks.

An entry exists only while an upload holds the lock or waits for it: releasing with no
one waiting deletes the entry, and a waiter that gives up (deadline or cancellation)
removes itself. Release hands the lock straight to the next waiter, so a path never
looks free between two uploads. Everything runs on the event loop; nothing here blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field

from cortexctl.errors import Conflict

LockKey = tuple[str, str]  # (node id, path)


@dataclass(eq=False)
class HeldLock:
    """One upload's claim on a path; the upload keeps its progress here for lease renewal."""

    node_id: str
    path: str
    sync_id: str
    temp_path: str = ""
    bytes_received: int = 0
    leased: bool = False  # its lease row has been written
    acquired_at: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> LockKey:
        return (self.node_id, self.path)


class _Slot:
    __slots__ = ("holder", "waiters")

    def __init__(self, holder: HeldLock) -> None:
        self.holder = holder
        self.waiters: deque[tuple[asyncio.Future[None], HeldLock]] = deque()


class SyncLockRegistry:
    def __init__(self) -> None:
        self._slots: dict[LockKey, _Slot] = {}

    def __len__(self) -> int:
        """Paths held or waited for (the only entries the registry keeps)."""
        return len(self._slots)

    def waiting(self) -> int:
        return sum(len(slot.waiters) for slot in self._slots.values())

    def held(self) -> frozenset[LockKey]:
        return frozenset(self._slots)

    def holders(self) -> list[HeldLock]:
        return [slot.holder for slot in self._slots.values()]

    async def acquire(self, node_id: str, path: str, sync_id: str, wait_s: float) -> HeldLock:
        """Take the lock of (node, path), waiting up to ``wait_s``; ABORTED past that."""
        lock = HeldLock(node_id, path, sync_id)
        slot = self._slots.get(lock.key)
        if slot is None:
            self._slots[lock.key] = _Slot(lock)
            return lock
        busy = Conflict(
            f"{path!r} is being uploaded by another stream of this node; "
            f"gave up after waiting {wait_s:g}s (retry later)"
        )
        if wait_s <= 0:
            raise busy
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (waiter, lock)
        slot.waiters.append(entry)
        try:
            async with asyncio.timeout(wait_s):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return lock  # handed over just as the deadline struck: it is ours
            self._forget_waiter(lock.key, entry)
            raise busy from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(lock)  # handed over as we were cancelled: pass it on
            else:
                self._forget_waiter(lock.key, entry)
            raise
        return lock

    def _forget_waiter(self, key: LockKey, entry: tuple[asyncio.Future[None], HeldLock]) -> None:
        slot = self._slots.get(key)
        if slot is None:
            return
        with contextlib.suppress(ValueError):
            slot.waiters.remove(entry)

    def release(self, lock: HeldLock) -> None:
        """Give the lock up (safe to call twice); the next live waiter gets it at once."""
        slot = self._slots.get(lock.key)
        if slot is None or slot.holder is not lock:
            return
        while slot.waiters:
            waiter, successor = slot.waiters.popleft()
            if not waiter.done():
                slot.holder = successor
                waiter.set_result(None)
                return
        del self._slots[lock.key]

    def stale(self, older_than_s: float) -> list[HeldLock]:
        """Locks held longer than ``older_than_s`` (reported by the lock-GC job)."""
        cutoff = time.monotonic() - older_than_s
        return [slot.holder for slot in self._slots.values() if slot.holder.acquired_at < cutoff]
