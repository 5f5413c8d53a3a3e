"""The task journal: every task, its state machine, and failing what a lost node held.

pending ─► dispatched ─► running ─► succeeded | failed | timed_out | cancelled | rejected
   └──────────┴────────────┴──────► failed | cancelled | rejected   (any time, by hub or CLI)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from cortexctl.core import changes, clock
from cortexctl.core.sandbox import SandboxDefaults, effective_policy, task_violation
from cortexctl.core.secrets import new_id
from cortexctl.errors import Conflict, InvalidArgument, NotFound
from cortexctl.store.engine import affected
from cortexctl.store.models import Node, Task

PENDING = "pending"
DISPATCHED = "dispatched"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
REJECTED = "rejected"
STATES = (PENDING, DISPATCHED, RUNNING, SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, REJECTED)
ACTIVE = (PENDING, DISPATCHED, RUNNING)
IN_FLIGHT = (DISPATCHED, RUNNING)
TERMINAL = (SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, REJECTED)

MAX_ARGV = 1024
MAX_ARG_LEN = 128 * 1024
MAX_SCRIPT_LEN = 1024 * 1024
MAX_ENV = 256


@dataclass(frozen=True)
class TaskView:
    id: str
    node_id: str
    node_name: str
    state: str
    argv: list[str]
    script: str
    cwd: str
    timeout_s: int
    exit_code: int | None
    stdout: str
    stderr: str
    output_truncated: bool
    error: str
    created_at: datetime
    dispatched_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    hub_id: str | None


def view(task: Task, node_name: str = "") -> TaskView:
    return TaskView(
        id=task.id,
        node_id=task.node_id,
        node_name=node_name,
        state=task.state,
        argv=list(task.argv or []),
        script=task.script,
        cwd=task.cwd,
        timeout_s=task.timeout_s,
        exit_code=task.exit_code,
        stdout=task.stdout.decode("utf-8", "replace"),
        stderr=task.stderr.decode("utf-8", "replace"),
        output_truncated=task.output_truncated,
        error=task.error,
        created_at=task.created_at,
        dispatched_at=task.dispatched_at,
        started_at=task.started_at,
        finished_at=task.finished_at,
        hub_id=task.hub_id,
    )


def check_task_shape(argv: Sequence[str], script: str, env: Mapping[str, str], cwd: str) -> None:
    """Reject malformed tasks before they reach the journal."""
    if bool(argv) == bool(script):
        raise InvalidArgument("a task needs exactly one of an argv (after --) or --script")
    if len(argv) > MAX_ARGV or any(len(arg) > MAX_ARG_LEN or "\0" in arg for arg in argv):
        raise InvalidArgument(
            f"argv too large or has a NUL byte (at most {MAX_ARGV} "
            f"arguments of {MAX_ARG_LEN} bytes)"
        )
    if argv and not argv[0]:
        raise InvalidArgument("argv[0] is empty: name the command to run")
    if len(script) > MAX_SCRIPT_LEN or "\0" in script:
        raise InvalidArgument(
            f"script too large or has a NUL byte (at most {MAX_SCRIPT_LEN} bytes)"
        )
    if len(env) > MAX_ENV or any(not k or "=" in k or "\0" in k + v for k, v in env.items()):
        raise InvalidArgument(
            "bad task environment: names must be non-empty without '=' or "
            f"NUL, values without NUL, at most {MAX_ENV} entries"
        )
    if cwd.startswith("/") or ".." in cwd.split("/") or "\0" in cwd:
        raise InvalidArgument(
            f"bad --cwd {cwd!r}: give a path relative to the node's workspace, without '..'"
        )


def submit_task(
    session: Session,
    node: Node,
    *,
    argv: Sequence[str] = (),
    script: str = "",
    timeout_s: int = 0,
    env: Mapping[str, str] | None = None,
    cwd: str = "",
    defaults: SandboxDefaults,
) -> TaskView:
    """Record a task for ``node``; one the node's policy forbids ends REJECTED at once."""
    env = dict(env or {})
    check_task_shape(argv, script, env, cwd)
    if node.revoked_at is not None:
        raise Conflict(f"node {node.name} ({node.id}) is revoked; it runs no more tasks")
    if timeout_s < 0:
        raise InvalidArgument("bad --timeout: must not be negative")
    now = clock.now()
    violation = task_violation(effective_policy(node, defaults), argv, script)
    task = Task(
        id=new_id("tk_"),
        node_id=node.id,
        argv=list(argv),
        script=script,
        env=env,
        cwd=cwd,
        timeout_s=timeout_s,
        state=REJECTED if violation else PENDING,
        created_at=now,
        finished_at=now if violation else None,
        error=violation or "",
        stdout=b"",
        stderr=b"",
        output_truncated=False,
    )
    session.add(task)
    if not violation:
        changes.bump(session)
    session.flush()
    return view(task, node.name)


def get_task(session: Session, task_id: str) -> TaskView:
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"no task {task_id!r}; see `cortexctl tasks list`")
    node = session.get(Node, task.node_id)
    return view(task, node.name if node else "")


def list_tasks(
    session: Session, *, node_id: str | None = None, states: Sequence[str] = (), limit: int = 100
) -> list[TaskView]:
    query = select(Task, Node.name).join(Node, Node.id == Task.node_id)
    if node_id:
        query = query.where(Task.node_id == node_id)
    if states:
        query = query.where(Task.state.in_(list(states)))
    rows = session.execute(query.order_by(Task.created_at.desc(), Task.id).limit(limit)).all()
    return [view(task, name) for task, name in rows]


def _finish(
    session: Session, ids: Iterable[str], state: str, error: str, from_states: Sequence[str]
) -> int:
    ids = list(ids)
    if not ids:
        return 0
    return affected(
        session.execute(
            update(Task)
            .where(Task.id.in_(ids), Task.state.in_(list(from_states)))
            .values(state=state, error=error, finished_at=clock.now())
            .execution_options(synchronize_session=False)
        )
    )


def cancel_task(
    session: Session, task_id: str, reason: str = "cancelled by an operator"
) -> TaskView:
    """End a task CANCELLED; a hub holding it tells the node to stop it."""
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"no task {task_id!r}; see `cortexctl tasks list`")
    if task.state in TERMINAL:
        raise Conflict(f"task {task_id} already ended {task.state}")
    if _finish(session, [task_id], CANCELLED, reason, ACTIVE):
        changes.bump(session)
    session.refresh(task)
    return get_task(session, task_id)


def fail_node_tasks(
    session: Session, node_id: str, reason: str, *, stream_id: str | None = None
) -> int:
    """FAIL every non-terminal task of a node with ``reason``; return how many.

    With ``stream_id``, only tasks handed out on that stream (and pending ones nobody
    holds) — so the end of a superseded stream leaves the newer stream's tasks alone.
    """
    query = select(Task.id, Task.state, Task.stream_id).where(
        Task.node_id == node_id, Task.state.in_(ACTIVE)
    )
    ids = [
        tid
        for tid, state, sid in session.execute(query)
        if stream_id is None or sid == stream_id or state == PENDING
    ]
    failed = _finish(session, ids, FAILED, reason, ACTIVE)
    if failed:
        changes.bump(session)
    return failed


def fail_hub_tasks(session: Session, hub_id: str, reason: str) -> int:
    """FAIL the in-flight tasks a hub dispatched (used when it restarts or is found dead)."""
    ids = session.scalars(
        select(Task.id).where(Task.hub_id == hub_id, Task.state.in_(IN_FLIGHT))
    ).all()
    return _finish(session, ids, FAILED, reason, IN_FLIGHT)


def claim_pending(
    session: Session,
    node: Node,
    *,
    hub_id: str,
    stream_id: str,
    defaults: SandboxDefaults,
    limit: int = 64,
) -> list[Task]:
    """Move a node's pending tasks to DISPATCHED for this stream; forbidden ones to REJECTED.

    Each claim is a conditional UPDATE, so two hubs never dispatch the same task.
    """
    policy = effective_policy(node, defaults)
    pending = session.scalars(
        select(Task)
        .where(Task.node_id == node.id, Task.state == PENDING)
        .order_by(Task.created_at, Task.id)
        .limit(limit)
    ).all()
    claimed = []
    now = clock.now()
    for task in pending:
        violation = task_violation(policy, task.argv or [], task.script)
        values: dict[str, Any] = (
            {"state": REJECTED, "error": violation, "finished_at": now}
            if violation
            else {
                "state": DISPATCHED,
                "dispatched_at": now,
                "hub_id": hub_id,
                "stream_id": stream_id,
            }
        )
        won = affected(
            session.execute(
                update(Task)
                .where(Task.id == task.id, Task.state == PENDING)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        )
        if won and not violation:
            session.refresh(task)
            claimed.append(task)
    return claimed


def record_update(
    session: Session,
    node_id: str,
    task_id: str,
    state: str,
    *,
    exit_code: int | None = None,
    stdout: bytes = b"",
    stderr: bytes = b"",
    output_truncated: bool = False,
    error: str = "",
    max_output_bytes: int = 1024 * 1024,
) -> bool:
    """Apply a node's report on its task; reports on terminal or foreign tasks are ignored."""
    if state not in (RUNNING, *TERMINAL):
        return False
    allowed_from = (DISPATCHED,) if state == RUNNING else IN_FLIGHT
    values: dict[str, Any] = {"state": state}
    now = clock.now()
    if state == RUNNING:
        values["started_at"] = now
    else:
        truncated = (
            output_truncated or len(stdout) > max_output_bytes or len(stderr) > max_output_bytes
        )
        values.update(
            exit_code=exit_code,
            stdout=stdout[:max_output_bytes],
            stderr=stderr[:max_output_bytes],
            output_truncated=truncated,
            error=error.replace("\0", "")[:4096],
            finished_at=now,
        )
    return bool(
        affected(
            session.execute(
                update(Task)
                .where(
                    Task.id == task_id, Task.node_id == node_id, Task.state.in_(list(allowed_from))
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        )
    )


def terminal_among(session: Session, task_ids: Iterable[str]) -> dict[str, str]:
    """Of these task ids, the ones that have ended, with their state."""
    ids = list(task_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(Task.id, Task.state).where(Task.id.in_(ids), Task.state.in_(list(TERMINAL)))
    )
    return {task_id: state for task_id, state in rows}


def gc_tasks(
    session: Session, *, older_than_s: float, dry_run: bool = False, batch: int = 500
) -> list[str]:
    """Ids of terminal tasks finished before the cutoff (deleted unless ``dry_run``)."""
    cutoff = clock.now() - timedelta(seconds=older_than_s)
    ids = list(
        session.scalars(
            select(Task.id)
            .where(Task.state.in_(list(TERMINAL)), Task.finished_at < cutoff)
            .order_by(Task.id)
            .limit(batch)
        )
    )
    if ids and not dry_run:
        session.execute(delete(Task).where(Task.id.in_(ids)))
    return ids
