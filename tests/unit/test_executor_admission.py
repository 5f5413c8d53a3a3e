"""The store executor: a full queue refuses ordinary calls, while calls that wait their
turn (stream opens in a reconnect storm) all run, first come first served."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from cortexctl.errors import Unavailable
from cortexctl.hub.executor import StoreExecutor
from cortexctl.store.engine import Store


def test_a_full_queue_refuses_ordinary_calls_but_waiting_calls_all_run(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}", pool_size=1)
    executor = StoreExecutor(store, workers=2, max_queue=2)
    gate = threading.Event()
    order: list[int] = []

    def blocked() -> None:
        gate.wait(10)

    async def main() -> None:
        holders = [asyncio.ensure_future(executor.run(blocked, timeout=10)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Unavailable, match="overloaded"):
            await executor.run(order.append, -1, timeout=5)
        waiting = [
            asyncio.ensure_future(executor.run(order.append, n, timeout=10, wait_turn=True))
            for n in range(20)
        ]
        await asyncio.sleep(0.05)
        assert order == [] and executor.waited == 20
        gate.set()
        await asyncio.gather(*holders, *waiting)
        assert executor.queued == 0

    try:
        asyncio.run(main())
    finally:
        executor.shutdown()
        store.dispose()
    assert sorted(order) == list(range(20))


def test_a_waiting_call_past_its_deadline_is_unavailable_and_gives_back_nothing(
    tmp_path: Path,
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}", pool_size=1)
    executor = StoreExecutor(store, workers=1, max_queue=1)
    gate = threading.Event()

    async def main() -> None:
        holder = asyncio.ensure_future(executor.run(gate.wait, 10, timeout=10))
        await asyncio.sleep(0)
        with pytest.raises(Unavailable, match="no place"):
            await executor.run(lambda: None, timeout=0.05, wait_turn=True)
        gate.set()
        await holder
        assert executor.queued == 0
        assert await executor.run(lambda: 7, timeout=5, wait_turn=True) == 7

    try:
        asyncio.run(main())
    finally:
        executor.shutdown()
        store.dispose()
