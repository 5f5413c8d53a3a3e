"""The admin lock is renewed while its holder works and lapses only when the holder dies."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from cortexctl.core.admin_lock import admin_lock
from cortexctl.store.engine import Store
from cortexctl.store.models import AdminLock
from tests.conftest import wait_until

TTL_S = 1.5  # short on purpose: each test holds the lock for several TTLs


def expiry(store: Store, name: str) -> datetime | None:
    with store.session() as session:
        return session.scalar(select(AdminLock.expires_at).where(AdminLock.name == name))


def test_a_holder_keeps_the_lock_past_its_ttl(fresh_store: Store) -> None:
    with admin_lock(fresh_store, "gc mirrors", ttl_s=TTL_S) as held:
        assert held
        first = expiry(fresh_store, "gc mirrors")
        # Several TTLs of trying; every attempt finds the lock renewed.
        with admin_lock(fresh_store, "gc mirrors", wait_s=3 * TTL_S, ttl_s=TTL_S) as second:
            assert not second
        later = expiry(fresh_store, "gc mirrors")
        assert later is not None and first is not None and later > first
    assert expiry(fresh_store, "gc mirrors") is None  # released on exit
    with admin_lock(fresh_store, "gc mirrors", wait_s=0, ttl_s=TTL_S) as again:
        assert again


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cortexctl.core.admin_lock import admin_lock
    from cortexctl.store.engine import Store

    store = Store(sys.argv[1])
    with admin_lock(store, "gc mirrors", wait_s=0, ttl_s=float(sys.argv[3])) as held:
        assert held
        Path(sys.argv[2]).write_text("held")
        while True:
            time.sleep(1)
    """
)


def test_the_lock_of_a_holder_that_died_can_be_taken(
    fresh_store: Store, database_url: str, tmp_path: Path
) -> None:
    ready = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, database_url, str(ready), str(TTL_S)])
    try:
        wait_until(lambda: ready.exists() or holder.poll() is not None, 30, "the lock holder")
        assert ready.exists(), "the holder process failed to take the lock"
        with admin_lock(fresh_store, "gc mirrors", wait_s=3 * TTL_S, ttl_s=TTL_S) as stolen:
            assert not stolen  # alive and renewing: held for longer than its TTL
        holder.send_signal(signal.SIGKILL)  # dies without releasing; renewals stop
        holder.wait(30)
        with admin_lock(fresh_store, "gc mirrors", wait_s=30 * TTL_S, ttl_s=TTL_S) as taken:
            assert taken
    finally:
        holder.kill()
        holder.wait()
