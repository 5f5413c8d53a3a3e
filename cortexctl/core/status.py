"""A snapshot of the mesh for `mesh status`, the status file and event watchers."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cortexctl.core import audit, clock, health, hubs, journal, nodes
from cortexctl.core.health import CHECK_LABELS as CHECK_LABELS
from cortexctl.core.health import CheckThresholds as CheckThresholds
from cortexctl.core.health import check_without_store as check_without_store
from cortexctl.core.sandbox import SandboxDefaults
from cortexctl.core.views import HealthCheck as HealthCheck
from cortexctl.core.views import JobStatusView as JobStatusView
from cortexctl.core.views import MeshSnapshot as MeshSnapshot
from cortexctl.core.views import NodeStatus as NodeStatus
from cortexctl.store.models import JobRun, SyncLease, Task


def snapshot(
    session: Session, defaults: SandboxDefaults, *, with_jobs: bool = False
) -> MeshSnapshot:
    views = nodes.list_nodes(session, defaults)
    active: dict[str, int] = {
        node_id: count
        for node_id, count in session.execute(
            select(Task.node_id, func.count())
            .where(Task.state.in_(list(journal.IN_FLIGHT)))
            .group_by(Task.node_id)
        )
    }
    pending = (
        session.scalar(select(func.count()).select_from(Task).where(Task.state == journal.PENDING))
        or 0
    )
    uploads: dict[str, int] = {
        node_id: count
        for node_id, count in session.execute(
            select(SyncLease.node_id, func.count()).group_by(SyncLease.node_id)
        )
    }
    items = [
        NodeStatus(
            id=v.id,
            name=v.name,
            status=v.status,
            hub_id=v.hub_id,
            sandbox=v.sandbox,
            policy_revision=v.policy_revision,
            last_heartbeat=v.last_heartbeat,
            running_tasks=active.get(v.id, 0),
            uploads_in_flight=uploads.get(v.id, 0),
        )
        for v in views
    ]
    counts = Counter(item.status for item in items)
    live = sorted(hubs.live_hub_ids(session))
    summary = {
        "node_count": len(items),
        "online_count": counts["online"],
        "stale_count": counts["stale"],
        "offline_count": counts["offline"],
        "revoked_count": counts["revoked"],
        "hub_count": len(live),
        "running_tasks": sum(active.values()),
        "pending_tasks": pending,
        "uploads_in_flight": sum(uploads.values()),
    }
    jobs = job_statuses(session, live) if with_jobs else []
    return MeshSnapshot(taken_at=clock.now(), nodes=items, hubs=live, summary=summary, jobs=jobs)


def job_statuses(session: Session, hub_ids: list[str] | None = None) -> list[JobStatusView]:
    query = select(JobRun).order_by(JobRun.hub_id, JobRun.job)
    if hub_ids is not None:
        query = query.where(JobRun.hub_id.in_(hub_ids))
    return [
        JobStatusView(
            hub_id=row.hub_id,
            job=row.job,
            interval_s=row.interval_s,
            last_started_at=row.last_started_at,
            last_duration_s=row.last_duration_s,
            last_outcome=row.last_outcome,
            last_error=row.last_error,
            last_result=dict(row.last_result or {}),
            next_run_at=row.next_run_at,
            runs=row.runs,
            failures=row.failures,
        )
        for row in session.scalars(query)
    ]


def record_job_run(session: Session, hub_id: str, view: JobStatusView) -> None:
    """Upsert the last run of a hub's maintenance job."""
    row = session.get(JobRun, (hub_id, view.job))
    if row is None:
        row = JobRun(hub_id=hub_id, job=view.job)
        session.add(row)
    row.interval_s = view.interval_s
    row.last_started_at = view.last_started_at
    row.last_duration_s = view.last_duration_s
    row.last_outcome = view.last_outcome
    row.last_error = view.last_error[:2000]
    row.last_result = view.last_result
    row.next_run_at = view.next_run_at
    row.runs = view.runs
    row.failures = view.failures


def finished_since(
    session: Session, since: datetime, limit: int = 500
) -> list[tuple[str, str, str, datetime]]:
    """(task id, node id, state, finished at) of tasks that ended after ``since``."""
    rows = session.execute(
        select(Task.id, Task.node_id, Task.state, Task.finished_at)
        .where(Task.finished_at > since)
        .order_by(Task.finished_at)
        .limit(limit)
    ).all()
    return [(tid, nid, state, at) for tid, nid, state, at in rows if at is not None]


# --- the event stream: `mesh status --watch-events`, JSON lines, the admin API ---------------


@dataclass(frozen=True)
class Watching:
    """The first event: the watch is live, so later changes will show."""

    event: str = field(init=False, default="watching")
    ts: datetime
    nodes: int
    hubs: list[str]


@dataclass(frozen=True)
class NodeAdded:
    event: str = field(init=False, default="node_added")
    node_id: str
    name: str
    status: str
    ts: datetime


@dataclass(frozen=True)
class NodeStatusChanged:
    """``event`` is node_joined (now online), node_left (offline), node_stale, node_revoked."""

    event: str
    node_id: str
    name: str
    status: str
    previous: str
    ts: datetime


@dataclass(frozen=True)
class PolicyChanged:
    event: str = field(init=False, default="policy_changed")
    node_id: str
    name: str
    sandbox: str
    revision: int
    ts: datetime


@dataclass(frozen=True)
class TaskFinished:
    event: str = field(init=False, default="task_finished")
    task_id: str
    node_id: str
    state: str
    ts: datetime


@dataclass(frozen=True)
class AuditRecorded:
    """An entry added to the audit log: an operator change, a node join, a refused call."""

    event: str = field(init=False, default="audit")
    seq: int
    actor: str
    actor_kind: str
    source: str
    action: str
    target: str
    outcome: str
    ts: datetime

    @classmethod
    def of(cls, entry: audit.AuditView) -> AuditRecorded:
        return cls(
            entry.seq,
            entry.actor,
            entry.actor_kind,
            entry.source,
            entry.action,
            entry.target,
            entry.outcome,
            entry.at,
        )


MeshEvent = Watching | NodeAdded | NodeStatusChanged | PolicyChanged | TaskFinished | AuditRecorded
STATUS_EVENTS = {
    "online": "node_joined",
    "offline": "node_left",
    "revoked": "node_revoked",
    "stale": "node_stale",
}


@dataclass(frozen=True)
class EventCursor:
    """Where a watcher is: the snapshot its last events were taken from, and the instant
    up to which it has seen tasks finish."""

    snapshot: MeshSnapshot
    since: datetime
    audit_seq: int = 0  # the last audit entry told


def start_events(session: Session, defaults: SandboxDefaults) -> tuple[Watching, EventCursor]:
    """The "watching" event and the cursor to ask ``events_since`` with."""
    snap = snapshot(session, defaults)
    cursor = EventCursor(snap, snap.taken_at, audit.latest_seq(session))
    return Watching(snap.taken_at, len(snap.nodes), snap.hubs), cursor


def events_since(
    session: Session, cursor: EventCursor, defaults: SandboxDefaults
) -> tuple[list[MeshEvent], EventCursor]:
    """What changed since ``cursor``, in order (node changes, tasks that finished, then
    audit entries), and the cursor for the next ask."""
    after = snapshot(session, defaults)
    at = after.taken_at
    events: list[MeshEvent] = []
    old = {node.id: node for node in cursor.snapshot.nodes}
    for node in after.nodes:
        prior = old.get(node.id)
        if prior is None:
            events.append(NodeAdded(node.id, node.name, node.status, at))
            continue
        if prior.status != node.status:
            kind = STATUS_EVENTS[node.status]
            events.append(
                NodeStatusChanged(kind, node.id, node.name, node.status, prior.status, at)
            )
        if prior.policy_revision != node.policy_revision:
            events.append(PolicyChanged(node.id, node.name, node.sandbox, node.policy_revision, at))
    since = cursor.since
    for task_id, node_id, state, finished_at in finished_since(session, since):
        events.append(TaskFinished(task_id, node_id, state, finished_at))
        since = max(since, finished_at)
    seq = cursor.audit_seq
    for entry in audit.entries_after(session, seq):
        events.append(AuditRecorded.of(entry))
        seq = entry.seq
    return events, EventCursor(after, since, seq)


def health_check(
    session: Session, defaults: SandboxDefaults, thresholds: CheckThresholds
) -> HealthCheck:
    """Judge the mesh against thresholds: offline/stale nodes, failed jobs, dead hubs."""
    snap = snapshot(session, defaults, with_jobs=True)
    return health.judge(snap, sorted(hubs.dead_hub_ids(session)), thresholds)
