"""Upload leases: the durable face of the hub's in-memory per-file sync locks.

A hub writes a lease when an upload starts, renews the leases of the uploads it holds at
most every ``LEASE_RENEW_S`` (one batched statement, never per chunk) and deletes the
lease when the upload ends. A lease nobody renews any more was left by a hub that died or
an upload whose clean-up failed; `gc locks` removes it and its temporary file.

Where several hubs share the store (PostgreSQL) the lease is also the lock across hubs:
``claim_lease`` takes the path with one conditional upsert judged on the store's clock
(``now()``), so two hubs never hold the same (node, path); ``confirm_lease`` re-checks it
just before the verified file is renamed into place. On SQLite (one hub) the in-memory
lock alone decides, and lease rows are written in batches.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from cortexctl.core import clock, hubs
from cortexctl.core.views import LeaseView as LeaseView
from cortexctl.store.engine import affected
from cortexctl.store.models import Hub, SyncLease

LEASE_RENEW_S = 5.0
# A running hub renews what it holds every LEASE_RENEW_S, so a lease of a live hub is
# never taken for idle before a few renewals have been missed, whatever --ttl says.
LIVE_HUB_MIN_IDLE_S = 3 * LEASE_RENEW_S
# How long a claimed lease holds across hubs without a renewal (on the store's clock).
STORE_LEASE_S = 3 * LEASE_RENEW_S

LeaseKey = tuple[str, str]  # (node id, path)


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
# What an upload that takes a lease row over writes into it (every column but the key).
TAKEN_OVER = (
    "sync_id",
    "hub_id",
    "hub_epoch",
    "temp_path",
    "started_at",
    "last_activity",
    "bytes_received",
    "expires_at",
)


def _take_over(statement: Any, **where: Any) -> Any:
    """``INSERT ... ON CONFLICT (node_id, path) DO UPDATE`` every column of the lease."""
    return statement.on_conflict_do_update(
        index_elements=["node_id", "path"],
        set_={key: statement.excluded[key] for key in TAKEN_OVER},
        **where,
    )


def dialect_insert(session: Session) -> Any:
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
        insert = dialect_insert(session)
        statement = _take_over(insert(LEASES))
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


def shared_store(session: Session) -> bool:
    """Whether several hubs can share this store (PostgreSQL; SQLite takes one hub)."""
    return session.get_bind().dialect.name == "postgresql"


def _store_utc() -> Any:
    """The store's clock as naive UTC, the form the store keeps timestamps in (PostgreSQL)."""
    return func.timezone("UTC", func.now())


def _store_expiry(lease_s: float) -> Any:
    return _store_utc() + func.make_interval(0, 0, 0, 0, 0, 0, lease_s)


@dataclass(frozen=True)
class Holder:
    """Who holds a path another upload wanted (for the message it ends with)."""

    hub_id: str
    address: str
    bytes_received: int


def claim_lease(
    session: Session,
    *,
    node_id: str,
    path: str,
    sync_id: str,
    hub_id: str,
    hub_epoch: int,
    temp_path: str,
    lease_s: float = STORE_LEASE_S,
) -> Holder | None:
    """Take (node, path) for one upload across hubs (PostgreSQL); None once taken, else
    who holds it.

    One conditional upsert: the row is taken when there is none, when its expiry has
    passed on the store's clock, when it is this hub's own (its in-memory lock says the
    upload before has ended), or when its hub is no longer a live member.
    """
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    now = clock.now()
    statement = pg_insert(LEASES).values(
        node_id=node_id,
        path=path,
        sync_id=sync_id,
        hub_id=hub_id,
        hub_epoch=hub_epoch,
        temp_path=temp_path,
        started_at=now,
        last_activity=now,
        bytes_received=0,
        expires_at=_store_expiry(lease_s),
    )
    live = select(Hub.id).where(Hub.stopped_at.is_(None), Hub.lease_expires_at > func.now())
    claim = _take_over(
        statement,
        where=or_(
            LEASES.c.hub_id == hub_id,
            LEASES.c.expires_at <= _store_utc(),
            LEASES.c.hub_id.not_in(live),
        ),
    ).returning(LEASES.c.sync_id)
    if session.execute(claim).first() is not None:
        return None
    row = session.execute(
        select(SyncLease.hub_id, SyncLease.bytes_received, Hub.address)
        .outerjoin(Hub, Hub.id == SyncLease.hub_id)
        .where(SyncLease.node_id == node_id, SyncLease.path == path)
    ).first()
    if row is None:  # ended between the two statements: free now, the next try takes it
        return Holder("", "", 0)
    return Holder(row.hub_id, row.address or "", int(row.bytes_received or 0))


def confirm_lease(
    session: Session,
    *,
    node_id: str,
    path: str,
    sync_id: str,
    hub_id: str,
    lease_s: float = STORE_LEASE_S,
) -> bool:
    """Just before a verified file is renamed into place: is the lease still this upload's?
    Extends it if so (PostgreSQL). False: another hub took the path (this hub was frozen
    past the lease, or taken over and its leases released)."""
    result = session.execute(
        update(SyncLease)
        .where(
            SyncLease.node_id == node_id,
            SyncLease.path == path,
            SyncLease.sync_id == sync_id,
            SyncLease.hub_id == hub_id,
        )
        .values(expires_at=_store_expiry(lease_s))
        .execution_options(synchronize_session=False)
    )
    return affected(result) == 1


def renew_leases(session: Session, renewals: Sequence[Renewal]) -> int:
    """Mark the uploads a hub still holds as active, in one batched statement; on a shared
    store their expiry moves on too (on the store's clock)."""
    if not renewals:
        return 0
    table = LEASES
    values: dict[str, Any] = {
        "last_activity": bindparam("v_at"),
        "bytes_received": bindparam("v_bytes"),
    }
    if shared_store(session):
        values["expires_at"] = _store_expiry(STORE_LEASE_S)
    statement = (
        update(table)
        .where(
            and_(
                table.c.node_id == bindparam("k_node"),
                table.c.path == bindparam("k_path"),
                table.c.sync_id == bindparam("k_sync"),
            )
        )
        .values(**values)
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


def release_hub_leases(session: Session, hub_id: str) -> int:
    """Delete every upload lease a dead hub held (its survivor's recovery); return how many.

    Its temporary files are on its own disk: its next start removes them (``start_hub``).
    """
    return affected(session.execute(delete(SyncLease).where(SyncLease.hub_id == hub_id)))
