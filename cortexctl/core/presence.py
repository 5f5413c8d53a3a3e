"""Presence: the hub keeps it in memory and flushes it here in batches; readers derive
online / stale / offline from the last heartbeat, the interval and the hub's lease.

The row is also the arbiter of which stream a node has: a stream that opens claims the row
(``claim_stream``, one transaction) with a generation one more than the last, on whichever
hub. A flush never overwrites a row a newer stream claimed; it reports the stream as
superseded instead, and the hub closes it (the fast path is the NOTIFY the claim sends).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cortexctl.core import changes, clock
from cortexctl.core.hubs import live_hub_ids
from cortexctl.store.engine import affected
from cortexctl.store.models import Presence

# Presence reaches the store up to one flush late (1 s by default); allow for it before
# calling a node stale.
FLUSH_SLACK_S = 1.0


@dataclass(frozen=True)
class NodePresence:
    node_id: str
    hub_id: str
    connected: bool
    connected_at: datetime
    last_heartbeat: datetime | None
    disconnected_at: datetime | None
    running_tasks: int
    status: str  # online | stale | offline
    peer: str
    policy_revision_acked: int


@dataclass
class PresenceUpdate:
    """One node's presence as the hub knows it in memory."""

    node_id: str
    hub_id: str
    connected_at: datetime
    last_heartbeat: datetime | None = None
    disconnected_at: datetime | None = None
    running_tasks: int = 0
    peer: str = ""
    heartbeat_interval_s: float = 5.0
    policy_revision_acked: int = 0
    stream_id: str = ""  # the stream this state is of, and its claimed generation
    stream_gen: int = 0


@dataclass(frozen=True)
class StreamClaim:
    """What opening a stream found in the node's presence row."""

    gen: int  # this stream's generation: newer than any stream the node had before
    moved_from: str | None = None  # another hub whose connected stream this one supersedes


@dataclass(frozen=True)
class Superseded:
    """A stream of this hub whose presence row a newer stream (on ``hub_id``) claimed."""

    node_id: str
    stream_id: str
    hub_id: str
    gen: int


@dataclass
class Flushed:
    written: int = 0
    superseded: list[Superseded] = field(default_factory=list)


def status_of(row: Presence, hub_alive: bool, at: datetime) -> str:
    if row.disconnected_at is not None or not hub_alive:
        return "offline"
    age = (at - (row.last_heartbeat or row.connected_at)).total_seconds()
    interval = row.heartbeat_interval_s
    if age <= interval + FLUSH_SLACK_S:
        return "online"
    if age <= 3 * interval + FLUSH_SLACK_S:
        return "stale"
    return "offline"


def presence_of(session: Session, node_ids: Iterable[str]) -> dict[str, NodePresence]:
    ids = list(node_ids)
    if not ids:
        return {}
    at = clock.now()
    live = live_hub_ids(session, at)
    rows = session.scalars(select(Presence).where(Presence.node_id.in_(ids))).all()
    result = {}
    for row in rows:
        status = status_of(row, row.hub_id in live, at)
        result[row.node_id] = NodePresence(
            node_id=row.node_id,
            hub_id=row.hub_id,
            connected=status != "offline",
            connected_at=row.connected_at,
            last_heartbeat=row.last_heartbeat,
            disconnected_at=row.disconnected_at,
            running_tasks=row.running_tasks,
            status=status,
            peer=row.peer,
            policy_revision_acked=row.policy_revision_acked,
        )
    return result


def claim_stream(
    session: Session,
    node_id: str,
    *,
    hub_id: str,
    stream_id: str,
    peer: str,
    heartbeat_interval_s: float,
) -> StreamClaim:
    """Make ``stream_id`` (opening on ``hub_id``) the node's stream, in the caller's
    transaction; the row lock orders concurrent claims of one node on any hubs.

    When the row was held by a connected stream of another hub, that hub is told on
    commit (``changes.stream_moved``: NOTIFY with the node, generation and hubs) and, if
    it is live, the change counter moves so its poll finds out too.
    """
    row = _lock_row(session, node_id)
    if row is None:
        # The node's first stream: make the row (a concurrent first claim may have made
        # it already, then this does nothing) and lock it.
        now = clock.now()
        session.execute(
            _insert_for(session)(Presence)
            .values(
                node_id=node_id,
                hub_id=hub_id,
                connected_at=now,
                disconnected_at=now,
                stream_id="",
                stream_gen=0,
                heartbeat_interval_s=heartbeat_interval_s,
                running_tasks=0,
                peer="",
                policy_revision_acked=0,
            )
            .on_conflict_do_nothing(index_elements=["node_id"])
        )
        row = _lock_row(session, node_id)
        assert row is not None
    previous_hub, previous_gen, disconnected_at = row
    gen = previous_gen + 1
    session.execute(
        update(Presence)
        .where(Presence.node_id == node_id)
        .values(
            hub_id=hub_id,
            stream_id=stream_id,
            stream_gen=gen,
            connected_at=clock.now(),
            last_heartbeat=None,
            disconnected_at=None,
            running_tasks=0,
            peer=peer[:255],
            heartbeat_interval_s=heartbeat_interval_s,
            policy_revision_acked=0,
        )
        .execution_options(synchronize_session=False)
    )
    moved_from = previous_hub if previous_hub != hub_id and disconnected_at is None else None
    if moved_from is not None:
        changes.stream_moved(session, node_id, gen, hub_id=hub_id, from_hub_id=moved_from)
        if moved_from in live_hub_ids(session):
            changes.bump(session)  # the safety net: its poll sees the counter move
    return StreamClaim(gen=gen, moved_from=moved_from)


def _insert_for(session: Session) -> Any:
    """The dialect's INSERT, which has ON CONFLICT DO NOTHING (both stores we run on)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        return insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _lock_row(session: Session, node_id: str) -> tuple[str, int, datetime | None] | None:
    found = session.execute(
        select(Presence.hub_id, Presence.stream_gen, Presence.disconnected_at)
        .where(Presence.node_id == node_id)
        .with_for_update()
    ).first()
    return None if found is None else (found[0], found[1], found[2])


def stream_owners(session: Session, node_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
    """node id -> (hub id, stream generation) of the stream that holds each presence row."""
    ids = list(node_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(Presence.node_id, Presence.hub_id, Presence.stream_gen).where(
            Presence.node_id.in_(ids)
        )
    )
    return {node_id: (hub_id, gen) for node_id, hub_id, gen in rows}


def flush_presence(session: Session, updates: Sequence[PresenceUpdate]) -> Flushed:
    """Write a batch of presence updates in the caller's one transaction.

    A row a newer stream has claimed (a higher generation, on this hub or another) is
    left alone; a connected stream found so is reported as superseded.
    """
    result = Flushed()
    if not updates:
        return result
    existing = {
        row.node_id: row
        for row in session.scalars(
            select(Presence)
            .where(Presence.node_id.in_(sorted({u.node_id for u in updates})))
            .order_by(Presence.node_id)
            .with_for_update()  # a claim waits for this flush, and the flush for a claim
        )
    }
    for item in updates:
        row = existing.get(item.node_id)
        if row is None:
            row = Presence(node_id=item.node_id, stream_gen=0)
            session.add(row)
            existing[item.node_id] = row
        elif row.stream_gen > item.stream_gen:
            if item.disconnected_at is None:
                result.superseded.append(
                    Superseded(item.node_id, item.stream_id, row.hub_id, row.stream_gen)
                )
            continue  # a newer stream owns this row
        row.hub_id = item.hub_id
        row.connected_at = item.connected_at
        row.last_heartbeat = item.last_heartbeat
        row.disconnected_at = item.disconnected_at
        row.running_tasks = item.running_tasks
        row.peer = item.peer[:255]
        row.heartbeat_interval_s = item.heartbeat_interval_s
        row.policy_revision_acked = item.policy_revision_acked
        row.stream_id = item.stream_id
        row.stream_gen = item.stream_gen
        result.written += 1
    return result


def disconnect_hub_nodes(session: Session, hub_id: str) -> int:
    """Mark every node connected through ``hub_id`` as disconnected (hub start or stop)."""
    return affected(
        session.execute(
            update(Presence)
            .where(Presence.hub_id == hub_id, Presence.disconnected_at.is_(None))
            .values(disconnected_at=clock.now())
            .execution_options(synchronize_session=False)
        )
    )
