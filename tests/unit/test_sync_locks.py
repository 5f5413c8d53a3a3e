"""SyncLockRegistry: an entry only while held or waited for, released on every path."""

from __future__ import annotations

import asyncio
import random

import pytest

from cortexctl.errors import Conflict
from cortexctl.hub.sync_locks import SyncLockRegistry


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_entry_exists_only_while_held() -> None:
    async def scenario() -> None:
        registry = SyncLockRegistry()
        lock = await registry.acquire("nd_1", "a.txt", "s1", 1.0)
        assert len(registry) == 1
        assert registry.held() == {("nd_1", "a.txt")}
        other = await registry.acquire("nd_1", "b.txt", "s2", 1.0)
        assert len(registry) == 2
        registry.release(lock)
        registry.release(lock)  # a second release is harmless
        registry.release(other)
        assert len(registry) == 0

    run(scenario())


def test_release_hands_the_lock_to_the_next_waiter() -> None:
    async def scenario() -> None:
        registry = SyncLockRegistry()
        first = await registry.acquire("nd_1", "a", "s1", 1.0)
        waiter = asyncio.create_task(registry.acquire("nd_1", "a", "s2", 5.0))
        await asyncio.sleep(0)
        assert registry.waiting() == 1
        registry.release(first)
        second = await waiter
        assert second.sync_id == "s2"
        assert registry.holders() == [second]
        registry.release(second)
        assert len(registry) == 0

    run(scenario())


def test_busy_past_the_wait_is_aborted_and_leaves_no_waiter() -> None:
    async def scenario() -> None:
        registry = SyncLockRegistry()
        holder = await registry.acquire("nd_1", "a", "s1", 1.0)
        with pytest.raises(Conflict, match="gave up after waiting"):
            await registry.acquire("nd_1", "a", "s2", 0.05)
        with pytest.raises(Conflict):
            await registry.acquire("nd_1", "a", "s3", 0)
        assert registry.waiting() == 0
        registry.release(holder)
        assert len(registry) == 0

    run(scenario())


def test_cancelled_waiter_leaves_no_trace() -> None:
    async def scenario() -> None:
        registry = SyncLockRegistry()
        holder = await registry.acquire("nd_1", "a", "s1", 1.0)
        waiter = asyncio.create_task(registry.acquire("nd_1", "a", "s2", 30.0))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert registry.waiting() == 0
        registry.release(holder)
        assert len(registry) == 0

    run(scenario())


def test_waiter_cancelled_just_after_the_handover_passes_it_on() -> None:
    async def scenario() -> None:
        registry = SyncLockRegistry()
        holder = await registry.acquire("nd_1", "a", "s1", 1.0)
        doomed = asyncio.create_task(registry.acquire("nd_1", "a", "s2", 30.0))
        patient = asyncio.create_task(registry.acquire("nd_1", "a", "s3", 30.0))
        await asyncio.sleep(0)
        registry.release(holder)  # hands it to `doomed`, which is cancelled before it runs
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        third = await patient
        assert registry.holders() == [third]
        registry.release(third)
        assert len(registry) == 0

    run(scenario())


def test_random_storm_of_holders_and_waiters_empties_the_registry() -> None:
    async def scenario() -> None:
        registry = SyncLockRegistry()
        rng = random.Random(7)

        async def upload(index: int) -> None:
            lock = await registry.acquire("nd_1", f"p{index % 5}", str(index), rng.random() / 50)
            try:
                await asyncio.sleep(rng.random() / 200)
                if rng.random() < 0.2:
                    raise RuntimeError("the stream broke")
            finally:
                registry.release(lock)

        tasks = [asyncio.create_task(upload(i)) for i in range(400)]
        await asyncio.sleep(0.01)
        for task in rng.sample(tasks, 100):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert len(registry) == 0
        assert registry.waiting() == 0

    run(scenario())
