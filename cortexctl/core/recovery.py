"""Every task ends: fail what a restarted or dead hub left in flight."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from cortexctl.core import changes, hubs, journal, locks, presence
from cortexctl.core.maintenance import run_gc_locks
from cortexctl.store.engine import Store, upgrade
from cortexctl.store.models import Hub


def recover_hub(session: Session, hub_id: str, reason: str) -> int:
    """Fail a hub's in-flight tasks, disconnect its nodes and release its upload leases, in
    one transaction; return tasks failed."""
    failed = journal.fail_hub_tasks(session, hub_id, reason)
    if failed:
        changes.bump(session)
        changes.task_ended(session)  # wakes `tasks wait` on them
    presence.disconnect_hub_nodes(session, hub_id)
    locks.release_hub_leases(session, hub_id)
    return failed


def sweep_dead_hubs(session: Session, *, me: str | None = None) -> dict[str, int]:
    """Recover every hub whose lease lapsed without a clean stop: {hub id: tasks failed}.

    Exactly one survivor recovers each: the row is taken FOR UPDATE SKIP LOCKED (a hub
    still moving a task holds it FOR SHARE, so it is skipped until that move commits), and
    a recovered hub is stopped, so no later sweep finds it.
    """
    now = hubs.store_now(session)
    dead = session.scalars(
        # One survivor recovers each dead hub: the others skip the row it has locked,
        # and find it stopped once it commits.
        select(Hub)
        .where(Hub.stopped_at.is_(None), Hub.lease_expires_at <= now)
        .with_for_update(skip_locked=True)
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
        hubs.mark_recovered(session, hub.id, me)
    return result


@dataclass(frozen=True)
class HubStart:
    """What a hub's start-up recovery did, for its log."""

    schema_before: str | None  # None: the store was empty
    schema_after: str
    stale_uploads: list[str]  # upload leases this hub's previous run left, freed
    recovered: dict[str, int]  # dead hub id -> tasks failed
    epoch: int  # this hub's membership epoch

    @property
    def schema_upgraded(self) -> bool:
        return self.schema_before != self.schema_after


def start_hub(
    store: Store, hub_id: str, *, address: str, lease_s: float, mirrors_dir: Path
) -> HubStart:
    """Everything a hub decides before it serves: the schema brought to the head; the
    uploads of this hub's previous run (they died with it) freed with their temp files;
    its nodes marked disconnected — what that run left in flight is not failed here, as
    its nodes may come back within the grace and report it (the server waits for that);
    dead hubs recovered; and this hub joined as a member with a new epoch."""
    before, after = upgrade(store)
    stale = run_gc_locks(store, ttl_s=0, mirrors_dir=mirrors_dir, hub_id=hub_id)
    with store.session(write=True) as session:
        presence.disconnect_hub_nodes(session, hub_id)
        recovered = sweep_dead_hubs(session, me=hub_id)
        epoch = hubs.register_hub(session, hub_id, address, lease_s)
    return HubStart(before, after, list(stale["expired"]), recovered, epoch)
