"""A store-level mutex so two runs of one admin task (cron, a hub job, a person) never
overlap. It lives in the database, so it works across processes and hosts alike.

A run that finds the lock held waits up to ``wait_s``; if it is still held then, the run
is skipped — callers report "another run is in progress" and exit 0, since the other run
is doing the same work.

The row carries an expiry ``ttl_s`` ahead, and while the holder works a renewal thread
pushes it forward every ``ttl_s / 3``. So a job may run for as long as it needs (the hub's
mirror GC can take an hour) and still keep the lock, while a holder that died — whose
renewals stop with it — leaves a row that another run may take once ``ttl_s`` has passed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

from sqlalchemy import delete, update

from cortexctl.core import clock
from cortexctl.errors import Conflict, CortexError
from cortexctl.store.engine import Store, affected
from cortexctl.store.models import AdminLock

DEFAULT_WAIT_S = 5.0
DEFAULT_TTL_S = 600.0
RENEWALS_PER_TTL = 3  # a renewal may fail twice (a busy store) before the lock can lapse

log = logging.getLogger("cortexctl.admin_lock")


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


def renew(store: Store, name: str, holder: str, ttl_s: float) -> bool:
    """Push the expiry of a lock ``holder`` holds ``ttl_s`` ahead; False if it is not held."""
    with store.session() as session:
        return bool(
            affected(
                session.execute(
                    update(AdminLock)
                    .where(AdminLock.name == name, AdminLock.holder == holder)
                    .values(expires_at=clock.now() + timedelta(seconds=ttl_s))
                    .execution_options(synchronize_session=False)
                )
            )
        )


class _Renewer(threading.Thread):
    """Keeps one held lock alive until stopped (a daemon: it dies with its process)."""

    def __init__(self, store: Store, name: str, holder: str, ttl_s: float) -> None:
        super().__init__(name=f"admin-lock {name}", daemon=True)
        self.store, self.lock_name, self.holder, self.ttl_s = store, name, holder, ttl_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.ttl_s / RENEWALS_PER_TTL):
            try:
                if not renew(self.store, self.lock_name, self.holder, self.ttl_s):
                    log.warning(
                        "admin lock %r lapsed while held (a stall longer than %gs); "
                        "another run may now overlap this one",
                        self.lock_name,
                        self.ttl_s,
                    )
                    return
            except CortexError as err:  # a busy or unreachable store: try again next tick
                log.warning("could not renew admin lock %r: %s", self.lock_name, err)


@contextlib.contextmanager
def admin_lock(
    store: Store, name: str, *, wait_s: float = DEFAULT_WAIT_S, ttl_s: float = DEFAULT_TTL_S
) -> Iterator[bool]:
    """Hold the lock ``name`` for the block (renewed while it runs); False if another run
    holds it."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + wait_s
    acquired = _try_acquire(store, name, holder, ttl_s)
    while not acquired and time.monotonic() < deadline:
        time.sleep(min(0.1, ttl_s / 10))
        acquired = _try_acquire(store, name, holder, ttl_s)
    renewer = _Renewer(store, name, holder, ttl_s) if acquired else None
    if renewer is not None:
        renewer.start()
    try:
        yield acquired
    finally:
        if renewer is not None:
            renewer.stopped.set()
            renewer.join()
            with store.session() as session:
                session.execute(
                    delete(AdminLock).where(AdminLock.name == name, AdminLock.holder == holder)
                )
