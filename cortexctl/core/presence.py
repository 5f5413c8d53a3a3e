"""Presence: the hub keeps it in memory and flushes it here in batches; readers derive
online / stale / offline from the last heartbeat, the interval and the hub's lease."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cortexctl.core import clock
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


def flush_presence(session: Session, updates: Sequence[PresenceUpdate]) -> int:
    """Write a batch of presence updates in the caller's one transaction."""
    if not updates:
        return 0
    existing = {
        row.node_id: row
        for row in session.scalars(
            select(Presence).where(Presence.node_id.in_([u.node_id for u in updates]))
        )
    }
    for item in updates:
        row = existing.get(item.node_id)
        if row is None:
            row = Presence(node_id=item.node_id)
            session.add(row)
        elif (
            row.hub_id != item.hub_id
            and item.disconnected_at is not None
            and row.disconnected_at is None
            and row.connected_at > item.connected_at
        ):
            continue  # a newer connection through another hub owns this row
        row.hub_id = item.hub_id
        row.connected_at = item.connected_at
        row.last_heartbeat = item.last_heartbeat
        row.disconnected_at = item.disconnected_at
        row.running_tasks = item.running_tasks
        row.peer = item.peer[:255]
        row.heartbeat_interval_s = item.heartbeat_interval_s
        row.policy_revision_acked = item.policy_revision_acked
    return len(updates)


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
