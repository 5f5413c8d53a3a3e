"""A snapshot of the mesh for `mesh status`, the status file and event watchers."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cortexctl.core import clock, hubs, journal, nodes
from cortexctl.core.sandbox import SandboxDefaults
from cortexctl.store.models import JobRun, SyncLease, Task


@dataclass(frozen=True)
class NodeStatus:
    id: str
    name: str
    status: str  # online | stale | offline | revoked
    hub_id: str | None
    sandbox: str
    policy_revision: int
    last_heartbeat: datetime | None
    running_tasks: int
    uploads_in_flight: int


@dataclass(frozen=True)
class JobStatusView:
    hub_id: str
    job: str
    interval_s: float
    last_started_at: datetime | None
    last_duration_s: float | None
    last_outcome: str
    last_error: str
    last_result: dict[str, Any]
    next_run_at: datetime | None
    runs: int
    failures: int


@dataclass(frozen=True)
class MeshSnapshot:
    taken_at: datetime
    nodes: list[NodeStatus]
    hubs: list[str]
    summary: dict[str, int]
    jobs: list[JobStatusView] = field(default_factory=list)


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
        "nodes": len(items),
        "online": counts["online"],
        "stale": counts["stale"],
        "offline": counts["offline"],
        "revoked": counts["revoked"],
        "hubs": len(live),
        "tasks_running": sum(active.values()),
        "tasks_pending": pending,
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


def diff_events(before: MeshSnapshot | None, after: MeshSnapshot) -> list[dict[str, Any]]:
    """Node events between two snapshots: joined, left, status and policy changes."""
    events: list[dict[str, Any]] = []
    old = {node.id: node for node in before.nodes} if before else {}
    for node in after.nodes:
        prior = old.get(node.id)
        base = {"node_id": node.id, "name": node.name}
        if prior is None:
            if before is not None:
                events.append({"event": "node_added", **base, "status": node.status})
            continue
        if prior.status != node.status:
            kind = {
                "online": "node_joined",
                "offline": "node_left",
                "revoked": "node_revoked",
                "stale": "node_stale",
            }[node.status]
            events.append({"event": kind, **base, "status": node.status, "previous": prior.status})
        if prior.policy_revision != node.policy_revision:
            events.append(
                {
                    "event": "policy_changed",
                    **base,
                    "sandbox": node.sandbox,
                    "revision": node.policy_revision,
                }
            )
    return events
