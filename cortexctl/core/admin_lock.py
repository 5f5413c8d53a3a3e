"""A store-level mutex so two runs of one admin task (cron, a hub job, a person) never
overlap. It lives in the database, so it works across processes and hosts alike.

A run that finds the lock held waits up to ``wait_s``; if it is still held then, the run
is skipped — callers report "another run is in progress" and exit 0, since the other run
is doing the same work. A holder that died leaves a row that expires after ``ttl_s``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

from sqlalchemy import delete, update

from cortexctl.core import clock
from cortexctl.errors import Conflict
from cortexctl.store.engine import Store, affected
from cortexctl.store.models import AdminLock

DEFAULT_WAIT_S = 5.0
DEFAULT_TTL_S = 600.0


def _try_acquire(store: Store, name: str, holder: str, ttl_s: float) -> bool:
    now = clock.now()
    expires = now + timedelta(seconds=ttl_s)
    try:
        with store.session(write=True) as session:
            taken = affected(
                session.execute(
                    update(AdminLock)
                    .where(AdminLock.name == name, AdminLock.expires_at <= now)
                    .values(holder=holder, acquired_at=now, expires_at=expires)
                    .execution_options(synchronize_session=False)
                )
            )
            if taken:
                return True
            if session.get(AdminLock, name) is not None:
                return False
            session.add(AdminLock(name=name, holder=holder, acquired_at=now, expires_at=expires))
        return True
    except Conflict:
        return False  # another run inserted it first


@contextlib.contextmanager
def admin_lock(
    store: Store, name: str, *, wait_s: float = DEFAULT_WAIT_S, ttl_s: float = DEFAULT_TTL_S
) -> Iterator[bool]:
    """Hold the lock ``name`` for the block; yields False if another run holds it."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + wait_s
    acquired = _try_acquire(store, name, holder, ttl_s)
    while not acquired and time.monotonic() < deadline:
        time.sleep(0.1)
        acquired = _try_acquire(store, name, holder, ttl_s)
    try:
        yield acquired
    finally:
        if acquired:
            with store.session() as session:
                session.execute(
                    delete(AdminLock).where(AdminLock.name == name, AdminLock.holder == holder)
                )
