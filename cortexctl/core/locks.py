"""Upload leases: the durable face of the hub's in-memory per-file sync locks.

A hub writes a lease when an upload starts, renews the leases of the uploads it holds at
most every ``LEASE_RENEW_S`` (one batched statement, never per chunk) and deletes the
lease when the upload ends. A lease nobody renews any more was left by a hub that died or
an upload whose clean-up failed; `gc locks` removes it and its temporary file.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, select, tuple_, update
from sqlalchemy.orm import Session

from cortexctl.core import clock, hubs
from cortexctl.store.engine import affected
from cortexctl.store.models import SyncLease

LEASE_RENEW_S = 5.0
# A running hub renews what it holds every LEASE_RENEW_S, so a lease of a live hub is
# never taken for idle before a few renewals have been missed, whatever --ttl says.
LIVE_HUB_MIN_IDLE_S = 3 * LEASE_RENEW_S

LeaseKey = tuple[str, str]  # (node id, path)


@dataclass(frozen=True)
class LeaseView:
    node_id: str
    path: str
    sync_id: str
    hub_id: str
    temp_path: str
    started_at: datetime
    last_activity: datetime
    bytes_received: int
    idle_s: float


@dataclass(frozen=True)
class Renewal:
    node_id: str
    path: str
    sync_id: str
    bytes_received: int


def view(lease: SyncLease, at: datetime) -> LeaseView:
    return LeaseView(
        node_id=lease.node_id,
        path=lease.path,
        sync_id=lease.sync_id,
        hub_id=lease.hub_id,
        temp_path=lease.temp_path,
        started_at=lease.started_at,
        last_activity=lease.last_activity,
        bytes_received=lease.bytes_received,
        idle_s=round(max(0.0, (at - lease.last_activity).total_seconds()), 3),
    )


@dataclass(frozen=True)
class LeaseStart:
    node_id: str
    path: str
    sync_id: str
    hub_id: str
    temp_path: str


@dataclass(frozen=True)
class LeaseEnd:
    node_id: str
    path: str
    sync_id: str


LEASES = cast(Table, SyncLease.__table__)


def _insert_for(session: Session) -> Any:
    """The dialect's INSERT, which has ON CONFLICT DO UPDATE (both stores we run on)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def apply_lease_changes(
    session: Session, starts: Sequence[LeaseStart], ends: Sequence[LeaseEnd]
) -> None:
    """Record uploads that started and forget those that ended, in the caller's transaction.

    Starts go first: an end names its own sync id, so it never removes the lease of a later
    upload of the same file, and a start takes over a row an earlier upload left behind
    (one atomic upsert each; a get-then-update would race the earlier upload's delete).
    """
    if starts:
        now = clock.now()
        insert = _insert_for(session)
        statement = insert(LEASES)
        statement = statement.on_conflict_do_update(
            index_elements=["node_id", "path"],
            set_={
                key: statement.excluded[key]
                for key in (
                    "sync_id",
                    "hub_id",
                    "temp_path",
                    "started_at",
                    "last_activity",
                    "bytes_received",
                )
            },
        )
        session.execute(
            statement,
            [
                {
                    "node_id": item.node_id,
                    "path": item.path,
                    "sync_id": item.sync_id,
                    "hub_id": item.hub_id,
                    "temp_path": item.temp_path,
                    "started_at": now,
                    "last_activity": now,
                    "bytes_received": 0,
                }
                for item in starts
            ],
        )
    if ends:
        table = LEASES
        session.execute(
            delete(table).where(
                and_(
                    table.c.node_id == bindparam("k_node"),
                    table.c.path == bindparam("k_path"),
                    table.c.sync_id == bindparam("k_sync"),
                )
            ),
            [{"k_node": e.node_id, "k_path": e.path, "k_sync": e.sync_id} for e in ends],
        )


def begin_lease(
    session: Session, *, node_id: str, path: str, sync_id: str, hub_id: str, temp_path: str
) -> None:
    """Record one upload (see apply_lease_changes)."""
    apply_lease_changes(session, [LeaseStart(node_id, path, sync_id, hub_id, temp_path)], [])


def renew_leases(session: Session, renewals: Sequence[Renewal]) -> int:
    """Mark the uploads a hub still holds as active, in one batched statement."""
    if not renewals:
        return 0
    table = LEASES
    statement = (
        update(table)
        .where(
            and_(
                table.c.node_id == bindparam("k_node"),
                table.c.path == bindparam("k_path"),
                table.c.sync_id == bindparam("k_sync"),
            )
        )
        .values(last_activity=bindparam("v_at"), bytes_received=bindparam("v_bytes"))
    )
    now = clock.now()
    session.execute(
        statement,
        [
            {
                "k_node": item.node_id,
                "k_path": item.path,
                "k_sync": item.sync_id,
                "v_at": now,
                "v_bytes": item.bytes_received,
            }
            for item in renewals
        ],
    )
    return len(renewals)


def live_temp_paths(session: Session) -> set[str]:
    """Temp files of uploads whose hub is alive (never an orphan for `gc mirrors`)."""
    live = hubs.live_hub_ids(session)
    return {
        temp
        for temp, hub_id in session.execute(select(SyncLease.temp_path, SyncLease.hub_id))
        if hub_id in live and temp
    }


def live_lease_nodes(session: Session) -> set[str]:
    live = hubs.live_hub_ids(session)
    return {
        node_id
        for node_id, hub_id in session.execute(select(SyncLease.node_id, SyncLease.hub_id))
        if hub_id in live
    }


def expired_leases(
    session: Session,
    *,
    ttl_s: float,
    held: Collection[LeaseKey] = frozenset(),
    hub_id: str | None = None,
    after: LeaseKey | None = None,
    batch: int = 500,
) -> tuple[list[LeaseView], LeaseKey | None]:
    """One page of leases idle past ``ttl_s`` that nobody holds; and where the next starts.

    A lease of ``hub_id`` (the hub asking) is expired only if it is not in ``held``, its
    registry of live uploads; a lease of another live hub only once it also missed a few
    renewals; a lease of a hub that is gone as soon as it is idle past the TTL.
    """
    at = clock.now()
    live = hubs.live_hub_ids(session, at)
    query = (
        select(SyncLease)
        .where(SyncLease.last_activity < at - timedelta(seconds=ttl_s))
        .order_by(SyncLease.node_id, SyncLease.path)
        .limit(batch)
    )
    if after is not None:
        query = query.where(tuple_(SyncLease.node_id, SyncLease.path) > tuple_(*after))
    rows = list(session.scalars(query))
    next_after = (rows[-1].node_id, rows[-1].path) if len(rows) == batch else None
    expired = []
    for row in rows:
        lease = view(row, at)
        if row.hub_id == hub_id:
            if (row.node_id, row.path) in held:
                continue
        elif row.hub_id in live and lease.idle_s < max(ttl_s, LIVE_HUB_MIN_IDLE_S):
            continue
        expired.append(lease)
    return expired, next_after


def delete_leases(session: Session, leases: Sequence[LeaseView]) -> list[LeaseView]:
    """Delete these leases unless renewed or taken over since they were read."""
    deleted = []
    for lease in leases:
        result = session.execute(
            delete(SyncLease).where(
                SyncLease.node_id == lease.node_id,
                SyncLease.path == lease.path,
                SyncLease.sync_id == lease.sync_id,
                SyncLease.last_activity <= lease.last_activity,
            )
        )
        if affected(result):
            deleted.append(lease)
    return deleted
