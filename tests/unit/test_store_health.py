"""The hub measures its store: health from the executor's transactions, a full disk named
as such, and the ballast that keeps room for the store on a full disk."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import exc, text
from sqlalchemy.orm import Session

from cortexctl.errors import NotFound, StoreFull, Unavailable
from cortexctl.hub.ballast import Ballast
from cortexctl.hub.executor import StoreExecutor
from cortexctl.hub.metrics import store_health_families
from cortexctl.store.engine import Store, store_error

MIB = 1024 * 1024


def broken(session: Session) -> None:
    session.execute(text("SELECT * FROM no_such_table"))


def works(session: Session) -> int:
    return int(session.execute(text("SELECT 1")).scalar_one())


def refused(session: Session) -> None:
    raise NotFound("no node 'x'")  # the store answered: the work itself is refused


def disk_full(session: Session) -> None:
    raise exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))


def metrics(executor: StoreExecutor, ballast: Ballast | None = None) -> dict[str, float]:
    rt: Any = SimpleNamespace(executor=executor, ballast=ballast)
    return {
        sample.name: sample.value
        for family in store_health_families(rt)
        for sample in family.samples
    }


def test_store_health_counts_failing_transactions_and_clears_on_success(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}", pool_size=1)
    executor = StoreExecutor(store, workers=1)
    health = executor.health

    async def main() -> None:
        assert await executor.session(works) == 1
        assert health.healthy and health.last_success_unix is not None
        for _ in range(3):
            with pytest.raises(Unavailable):
                await executor.session(broken)
        assert (health.healthy, health.consecutive_failures) == (False, 3)
        assert "no such table" in health.last_error
        failing = metrics(executor)
        assert failing["cortex_store_healthy"] == 0
        assert failing["cortex_store_consecutive_failures"] == 3
        assert failing["cortex_store_failures_total"] == 3
        assert failing["cortex_store_failing_seconds"] >= 0
        assert health.view()["healthy"] is False
        with pytest.raises(NotFound):
            await executor.session(refused)
        assert health.healthy and health.failing_seconds() == 0.0
        working = metrics(executor)
        assert (working["cortex_store_healthy"], working["cortex_store_failures_total"]) == (1, 3)

    try:
        asyncio.run(main())
    finally:
        executor.shutdown()
        store.dispose()


def test_a_full_disk_is_its_own_error() -> None:
    full = exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
    locked = exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
    assert isinstance(store_error(full, "sqlite:///x.db"), StoreFull)
    assert not isinstance(store_error(locked, "sqlite:///x.db"), StoreFull)


def test_a_full_disk_releases_the_ballast_once_and_it_is_put_back_when_there_is_room(
    tmp_path: Path,
) -> None:
    store_file = tmp_path / "x.db"
    store = Store(f"sqlite:///{store_file}", pool_size=1)
    executor = StoreExecutor(store, workers=1)
    ballast = Ballast.beside(store_file, 2 * MIB, "0")
    executor.full_observers.append(ballast.release)
    assert ballast.ensure()
    assert ballast.path == tmp_path / "x.db.ballast"
    assert ballast.held_bytes() >= 2 * MIB  # real blocks, not a sparse file

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(StoreFull):
                await executor.session(disk_full, write=True)

    try:
        asyncio.run(main())
    finally:
        executor.shutdown()
        store.dispose()
    assert not ballast.path.exists() and ballast.released
    assert ballast.releases == 1  # the second full disk had nothing more to give
    assert executor.health.consecutive_failures == 2
    assert metrics(executor, ballast)["cortex_store_ballast_released"] == 1
    # No room above the reserve: it stays released ...
    assert not Ballast.beside(store_file, 2 * MIB, str(10**18)).ensure()
    # ... room again: put back.
    assert ballast.ensure() and not ballast.released and ballast.held_bytes() >= 2 * MIB
    assert metrics(executor, ballast)["cortex_store_ballast_released"] == 0


def test_a_connection_opened_after_the_store_file_was_removed_makes_no_new_store(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.db"
    store = Store(f"sqlite:///{path}", pool_size=1)
    try:
        with store.session() as session:
            assert works(session) == 1
        store.dispose()  # the next session needs a new connection
        path.unlink()
        with pytest.raises(Unavailable, match="unable to open"), store.session() as session:
            works(session)
        assert not path.exists()
    finally:
        store.dispose()
