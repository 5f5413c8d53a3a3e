"""Hubs as members: each running hub holds a lease row; a hub whose lease lapsed is gone.

Every instant that decides a lease is the store's (``store_now``: PostgreSQL's ``now()``),
never a hub's own clock, so hubs on hosts whose clocks disagree still agree on who is
alive. Each hub row carries an epoch, the fencing token: it grows at every start and
whenever a hub re-acquires a lease that lapsed, so work done under an older epoch can be
told apart from work done under the current one.

Fencing: every task a hub claims records its id and epoch, and every later move of that
task by a hub first ``hold``s the hub's membership (a shared lock on its row, so a
survivor's takeover waits for the move to commit, or the move waits for the takeover and
then fails) and is conditional on the task still carrying that hub and epoch. A hub
another one took over raises ``Fenced`` on its next move.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cortexctl import __version__
from cortexctl.core import clock
from cortexctl.core.views import HubView as HubView
from cortexctl.errors import Fenced
from cortexctl.store.models import Hub, Task

HUB_LEASE_S = 15.0
IDLE_IN_TRANSACTION_FLOOR_S = 5.0


def idle_in_transaction_limit(configured_s: float, lease_s: float) -> float:
    """How long PostgreSQL lets a hub's session sit inside a transaction: the configured
    value, else the hub's lease (at least 5 s, so a hub starved of CPU mid-transaction on a
    loaded host is not cut off). A hub frozen mid-transaction then holds the row locks a
    survivor needs to take it over (its membership row, its tasks) no longer than that."""
    return configured_s or max(lease_s, IDLE_IN_TRANSACTION_FLOOR_S)


def store_now(session: Session) -> datetime:
    """The store's clock (aware UTC): PostgreSQL's ``now()``; SQLite's is this host's."""
    if session.get_bind().dialect.name != "postgresql":
        return clock.now()
    value = session.execute(select(func.now())).scalar_one()
    assert isinstance(value, datetime)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Member:
    """A hub process as it knows itself: its id and the epoch it last joined or renewed at."""

    hub_id: str
    epoch: int


def hold(session: Session, member: Member) -> int:
    """Check that ``member`` still holds its place and keep it for this transaction; return
    the epoch its tasks carry now. Raise ``Fenced`` once another hub took over.

    The row is locked FOR SHARE: a survivor recovering this hub (FOR UPDATE SKIP LOCKED)
    skips it until this transaction ends, and a move that comes after the takeover sees it.
    """
    query = select(Hub.epoch, Hub.registered_epoch, Hub.stopped_at, Hub.recovered_by).where(
        Hub.id == member.hub_id
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    row = session.execute(query).first()
    if row is None:
        raise Fenced(
            f"hub {member.hub_id} is no longer a member of the store (its row is gone)",
            epoch=member.epoch,
        )
    if row.stopped_at is not None:
        by = f" by hub {row.recovered_by}" if row.recovered_by else ""
        raise Fenced(
            f"hub {member.hub_id} (epoch {member.epoch}) was taken over{by} after its lease "
            "lapsed; its tasks were failed there",
            epoch=member.epoch,
        )
    if not (row.registered_epoch or 0) <= member.epoch <= row.epoch:
        raise Fenced(
            f"hub {member.hub_id} (epoch {member.epoch}) was replaced by another process "
            f"registered under its id (epoch {row.epoch})",
            epoch=member.epoch,
        )
    return int(row.epoch)


@dataclass(frozen=True)
class Renewal:
    """What renewing the lease found."""

    epoch: int
    lapsed: bool = False  # the lease had expired; it was re-acquired with a new epoch
    taken_over: bool = False  # another hub had recovered this hub (failed its tasks)
    recovered_by: str = ""


def register_hub(session: Session, hub_id: str, address: str, lease_s: float = HUB_LEASE_S) -> int:
    """Join as a member (a new epoch at every start); return the epoch."""
    now = store_now(session)
    hub = session.get(Hub, hub_id, with_for_update=True)
    if hub is None:
        hub = Hub(id=hub_id, epoch=0)
        session.add(hub)
    hub.address = address
    hub.pid = os.getpid()
    hub.hostname = socket.gethostname()
    hub.version = __version__
    hub.started_at = now
    hub.lease_expires_at = now + timedelta(seconds=lease_s)
    hub.stopped_at = None
    hub.recovered_by = None
    hub.recovered_epoch = None
    hub.nodes_connected = 0
    hub.epoch = (hub.epoch or 0) + 1
    hub.registered_epoch = hub.epoch
    session.flush()
    return hub.epoch


def renew_hub(
    session: Session,
    hub_id: str,
    lease_s: float = HUB_LEASE_S,
    *,
    epoch: int | None = None,
    nodes_connected: int | None = None,
) -> Renewal:
    """Extend the lease. One that lapsed with nobody taking over is re-acquired with epoch
    + 1, and the hub's tasks move to it. One another hub took over (or another process
    registered under this id) is left alone: ``taken_over``, the hub must fence itself and
    ``register_hub`` again."""
    now = store_now(session)
    hub = session.get(Hub, hub_id, with_for_update=True)
    if hub is None:  # removed under us (a restore, an operator): fence, then join again
        return Renewal(epoch=epoch or 0, taken_over=True)
    if hub.stopped_at is not None:  # recovered by a survivor (or stopped): not ours now
        return Renewal(epoch=hub.epoch, taken_over=True, recovered_by=hub.recovered_by or "")
    if epoch is not None and not (hub.registered_epoch or 0) <= epoch <= hub.epoch:
        # Another process registered under this id since: the row is its, not ours.
        return Renewal(epoch=hub.epoch, taken_over=True, recovered_by=hub.recovered_by or "")
    if nodes_connected is not None:
        hub.nodes_connected = nodes_connected
    lapsed = hub.lease_expires_at <= now
    hub.lease_expires_at = now + timedelta(seconds=lease_s)
    if lapsed:
        before = hub.epoch
        hub.epoch = (hub.epoch or 0) + 1
        # Nobody took over: what the hub holds is still its, under the new epoch.
        session.execute(
            update(Task)
            .where(Task.hub_id == hub_id, Task.hub_epoch == before, Task.finished_at.is_(None))
            .values(hub_epoch=hub.epoch)
            .execution_options(synchronize_session=False)
        )
    session.flush()
    return Renewal(epoch=hub.epoch, lapsed=lapsed)


def taken_over(session: Session, hub_id: str, epoch: int) -> bool:
    """Whether another hub has taken this hub's place for ``epoch``.

    True once a live hub recovered it (failed its tasks after its lease lapsed), or another
    process registered under its id. A hub that merely could not renew (a full disk, a
    slow store) and is not taken over keeps serving and retries: fence only when this (or
    ``hold``) says so.
    """
    hub = session.get(Hub, hub_id)
    if hub is None or hub.stopped_at is not None:
        return True
    return not (hub.registered_epoch or 0) <= epoch <= hub.epoch


def mark_recovered(session: Session, hub_id: str, by: str | None) -> None:
    """A live hub failed this dead hub's tasks: record who did it, and end its epoch."""
    hub = session.get(Hub, hub_id)
    if hub is not None:
        hub.recovered_by = by or ""
        hub.recovered_epoch = hub.epoch
        hub.stopped_at = store_now(session)
        hub.lease_expires_at = min(hub.lease_expires_at, hub.stopped_at)


def set_address(session: Session, hub_id: str, address: str) -> None:
    """The address the hub bound (``--listen`` may have asked for port 0)."""
    hub = session.get(Hub, hub_id)
    if hub is not None:
        hub.address = address


def stop_hub(session: Session, hub_id: str) -> None:
    hub = session.get(Hub, hub_id)
    if hub is not None:
        hub.stopped_at = store_now(session)
        hub.lease_expires_at = hub.stopped_at
        hub.nodes_connected = 0


def live_hub_ids(session: Session, at: datetime | None = None) -> set[str]:
    at = at or store_now(session)
    return set(
        session.scalars(select(Hub.id).where(Hub.stopped_at.is_(None), Hub.lease_expires_at > at))
    )


def dead_hub_ids(session: Session, at: datetime | None = None) -> set[str]:
    """Hubs whose lease lapsed without a clean stop, not yet recovered by a live hub."""
    at = at or store_now(session)
    return set(
        session.scalars(select(Hub.id).where(Hub.stopped_at.is_(None), Hub.lease_expires_at <= at))
    )


def list_hubs(session: Session, *, include_stopped: bool = False) -> list[HubView]:
    """The member hubs (live and dead; stopped ones too with ``include_stopped``)."""
    now = store_now(session)
    query = select(Hub).order_by(Hub.started_at, Hub.id)
    if not include_stopped:
        query = query.where(Hub.stopped_at.is_(None))
    views = []
    for hub in session.scalars(query):
        if hub.stopped_at is not None:
            state = "stopped"
        elif hub.lease_expires_at > now:
            state = "live"
        else:
            state = "dead"
        views.append(
            HubView(
                id=hub.id,
                address=hub.address,
                hostname=hub.hostname,
                pid=hub.pid,
                version=hub.version,
                epoch=hub.epoch,
                state=state,
                started_at=hub.started_at,
                lease_expires_at=hub.lease_expires_at,
                lease_remaining_s=round((hub.lease_expires_at - now).total_seconds(), 3),
                nodes_connected=hub.nodes_connected if state == "live" else 0,
                stopped_at=hub.stopped_at,
                recovered_by_hub_id=hub.recovered_by,
            )
        )
    return views
