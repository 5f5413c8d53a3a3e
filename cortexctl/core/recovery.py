"""Every task ends: fail what a restarted or dead hub left in flight."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cortexctl.core import clock, hubs, journal, presence
from cortexctl.store.models import Hub


def recover_hub(session: Session, hub_id: str, reason: str) -> int:
    """Fail a hub's in-flight tasks and disconnect its nodes; return tasks failed."""
    failed = journal.fail_hub_tasks(session, hub_id, reason)
    presence.disconnect_hub_nodes(session, hub_id)
    return failed


def sweep_dead_hubs(session: Session, *, me: str | None = None) -> dict[str, int]:
    """Recover every hub whose lease lapsed without a clean stop: {hub id: tasks failed}."""
    now = clock.now()
    dead = session.scalars(
        select(Hub).where(Hub.stopped_at.is_(None), Hub.lease_expires_at <= now)
    ).all()
    result = {}
    for hub in dead:
        if hub.id == me:
            continue
        result[hub.id] = recover_hub(
            session,
            hub.id,
            f"hub {hub.id} at {hub.address} stopped renewing its lease "
            "(it died or lost the store) while the task was in flight",
        )
        hubs.stop_hub(session, hub.id)
    return result
