"""The task journal: every task, its state machine, and failing what a lost node held.

pending ─► dispatched ─► running ─► succeeded | failed | timed_out | cancelled | rejected
   ├──────────┴────────────┴──────► failed | cancelled | rejected   (any time, by hub or CLI)
   └─► expired   (its expiry passed before any hub dispatched it; see ``expire_tasks``)

Fencing: a claim records the hub and its epoch (``hub_id``, ``hub_epoch``); every later
move by a hub (running, a result, adoption by a node's new stream, the lost-node grace,
requeue, the drain) takes a ``hubs.Member``, holds its membership (``hubs.hold``) and is a
conditional UPDATE on the task still carrying that hub and epoch. A hub another hub took
over gets ``Fenced`` and moves nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.orm import Session

from cortexctl.core import changes, clock, hubs
from cortexctl.core.clock import Deadline, Pause, fixed_interval, poll_until
from cortexctl.core.hubs import Member
from cortexctl.core.live_output import STDERR, STDOUT, Append
from cortexctl.core.refs import unique_match
from cortexctl.core.sandbox import (
    SandboxDefaults,
    effective_policy,
    feature_violation,
    task_violation,
)
from cortexctl.core.secrets import new_id
from cortexctl.core.states import ACTIVE as ACTIVE
from cortexctl.core.states import CANCELLED as CANCELLED
from cortexctl.core.states import DISPATCHED as DISPATCHED
from cortexctl.core.states import EXPIRED as EXPIRED
from cortexctl.core.states import FAILED as FAILED
from cortexctl.core.states import IN_FLIGHT as IN_FLIGHT
from cortexctl.core.states import NO_EXIT_CODES as NO_EXIT_CODES
from cortexctl.core.states import PENDING as PENDING
from cortexctl.core.states import REJECTED as REJECTED
from cortexctl.core.states import RUNNING as RUNNING
from cortexctl.core.states import STATES as STATES
from cortexctl.core.states import SUCCEEDED as SUCCEEDED
from cortexctl.core.states import TERMINAL as TERMINAL
from cortexctl.core.states import TIMED_OUT as TIMED_OUT
from cortexctl.core.states import check_expire_after
from cortexctl.core.views import Submitted as Submitted
from cortexctl.core.views import TaskLogs as TaskLogs
from cortexctl.core.views import TaskView as TaskView
from cortexctl.core.views import wait_exit_code as wait_exit_code
from cortexctl.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
)
from cortexctl.store.engine import affected
from cortexctl.store.models import Node, Task

TASK_ID_PREFIX = "tk_"
MAX_ARGV = 1024
MAX_ARG_LEN = 128 * 1024
MAX_SCRIPT_LEN = 1024 * 1024
MAX_ENV = 256


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
        expires_at=task.expires_at,
        hub_epoch=task.hub_epoch,
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
    expire_after_s: float | None = None,
) -> TaskView:
    """Record a task for ``node``; one the node's policy forbids ends REJECTED at once.

    With ``expire_after_s``, a task no hub has dispatched by then ends EXPIRED.
    """
    env = dict(env or {})
    check_task_shape(argv, script, env, cwd)
    return record_task(
        session,
        node,
        argv=argv,
        script=script,
        timeout_s=timeout_s,
        env=env,
        cwd=cwd,
        defaults=defaults,
        expire_after_s=expire_after_s,
    )


def record_task(
    session: Session,
    node: Node,
    *,
    argv: Sequence[str],
    script: str,
    timeout_s: int,
    env: dict[str, str],
    cwd: str,
    defaults: SandboxDefaults,
    expire_after_s: float | None,
) -> TaskView:
    """``submit_task`` of a task whose shape the caller checked (once for a fan-out)."""
    if node.revoked_at is not None:
        raise Conflict(f"node {node.name} ({node.id}) is revoked; it runs no more tasks")
    if node.cordoned_at is not None:
        raise Conflict(
            f"node {node.name} ({node.id}) is cordoned and takes no new tasks; "
            f"`cortexctl nodes uncordon {node.name}`, or submit to another node"
        )
    if timeout_s < 0:
        raise InvalidArgument("bad --timeout: must not be negative")
    check_expire_after(expire_after_s)
    now = clock.now()
    violation = task_violation(effective_policy(node, defaults), argv, script, env)
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
        expires_at=None
        if expire_after_s is None or violation
        else now + timedelta(seconds=expire_after_s),
    )
    session.add(task)
    if not violation:
        changes.bump(session)
    session.flush()
    return view(task, node.name)


def find_task(session: Session, ref: str) -> Task:
    """A task by id or by a unique prefix of its id (``tk_`` may be left out)."""
    task = session.get(Task, ref)
    if task is not None:
        return task
    match = unique_match(session, Task.id, TASK_ID_PREFIX, ref, "task")
    task = session.get(Task, match) if match else None
    if task is None:
        raise NotFound(f"no task {ref!r}; see `cortexctl tasks list`")
    return task


def get_task(session: Session, task_id: str) -> TaskView:
    task = find_task(session, task_id)
    node = session.get(Node, task.node_id)
    return view(task, node.name if node else "")


def list_tasks(
    session: Session,
    *,
    node_id: str | None = None,
    states: Sequence[str] = (),
    limit: int = 100,
    node_ids: Collection[str] | None = None,
) -> list[TaskView]:
    """Tasks newest first, of one node, of ``node_ids`` (a selector's), or of all."""
    query = select(Task, Node.name).join(Node, Node.id == Task.node_id)
    if node_id:
        query = query.where(Task.node_id == node_id)
    if node_ids is not None:
        query = query.where(Task.node_id.in_(list(node_ids)))
    if states:
        query = query.where(Task.state.in_(list(states)))
    rows = session.execute(query.order_by(Task.created_at.desc(), Task.id).limit(limit)).all()
    return [view(task, name) for task, name in rows]


def owned_by(hub_id: str, epoch: int) -> ColumnElement[bool]:
    """The condition of every move a hub makes: the task is still this hub's, at this epoch."""
    return (Task.hub_id == hub_id) & (Task.hub_epoch == epoch)


def _finish(
    session: Session,
    ids: Iterable[str],
    state: str,
    error: str,
    from_states: Sequence[str],
    *conditions: ColumnElement[bool],
) -> int:
    ids = list(ids)
    if not ids:
        return 0
    ended = affected(
        session.execute(
            update(Task)
            .where(Task.id.in_(ids), Task.state.in_(list(from_states)), *conditions)
            .values(state=state, error=error, finished_at=clock.now())
            .execution_options(synchronize_session=False)
        )
    )
    if ended and state in TERMINAL:
        changes.task_ended(session, ids)
    return ended


def cancel_task(
    session: Session,
    task_id: str,
    reason: str = "cancelled by an operator",
    *,
    dry_run: bool = False,
) -> TaskView:
    """End a task CANCELLED; the hub holding it tells the node to stop it.

    Conditional on the task's holder (hub and epoch) being the one read, so a cancel never
    lands between a claim and the claiming hub's view of it; a changed holder is read again.
    """
    task = find_task(session, task_id)
    for _ in range(5):
        if task.state in TERMINAL:
            raise Conflict(f"task {task.id} already ended {task.state}")
        if dry_run:
            return get_task(session, task.id)
        holder = (
            (Task.hub_id.is_(None),)
            if task.hub_id is None
            else (Task.hub_id == task.hub_id, _same_epoch(task.hub_epoch))
        )
        if _finish(session, [task.id], CANCELLED, reason, (task.state,), *holder):
            changes.bump(session)
            break
        session.refresh(task)
    session.refresh(task)
    return get_task(session, task.id)


def _same_epoch(epoch: int | None) -> ColumnElement[bool]:
    return Task.hub_epoch.is_(None) if epoch is None else Task.hub_epoch == epoch


def fail_node_tasks(
    session: Session,
    node_id: str,
    reason: str,
    *,
    stream_id: str | None = None,
    dry_run: bool = False,
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
    if dry_run:
        return len(ids)
    failed = _finish(session, ids, FAILED, reason, ACTIVE)
    if failed:
        changes.bump(session)
    return failed


def fail_stream_tasks(
    session: Session,
    stream_ids: Collection[str],
    reason: str,
    *,
    member: Member,
    previous_run: bool = False,
) -> int:
    """FAIL the in-flight tasks ``member`` still holds on these (ended) streams; PENDING
    ones stay. With ``previous_run``, those its previous process left (older epochs).

    A node that came back adopted its tasks onto its new stream (``adopt_tasks``), so what
    is still on an old stream after the grace is what nobody came back for.
    """
    ids = list(stream_ids)
    if not ids:
        return 0
    epoch = hubs.hold(session, member)
    # One conditional UPDATE: a task adopted by another hub in the meantime has another
    # stream id (and hub) by then and is left alone.
    where: list[ColumnElement[bool]] = [
        Task.stream_id.in_(ids),
        Task.state.in_(list(IN_FLIGHT)),
        Task.hub_id == member.hub_id,
        or_(Task.hub_epoch.is_(None), Task.hub_epoch < epoch)
        if previous_run
        else Task.hub_epoch == epoch,
    ]
    failed = affected(
        session.execute(
            update(Task)
            .where(*where)
            .values(state=FAILED, error=reason, finished_at=clock.now())
            .execution_options(synchronize_session=False)
        )
    )
    if failed:
        changes.bump(session)
        changes.task_ended(session)
    return failed


def in_flight_streams(session: Session, hub_id: str) -> set[str]:
    """Stream ids of a hub's in-flight tasks (at start-up: what its previous run left)."""
    rows = session.scalars(
        select(Task.stream_id)
        .where(Task.hub_id == hub_id, Task.state.in_(IN_FLIGHT), Task.stream_id.is_not(None))
        .distinct()
    )
    return {sid for sid in rows if sid}


@dataclass(frozen=True)
class Adoption:
    adopted: list[str]  # in flight on an older stream, held by the node: moved to the new one
    lost: list[str]  # in flight on an older stream, not held by the node: FAILED
    ended: dict[str, str]  # held by the node but already terminal here: the node stops them


def adopt_tasks(
    session: Session,
    node_id: str,
    *,
    stream_id: str,
    member: Member,
    held: Collection[str],
    reason_lost: str,
) -> Adoption:
    """A node's new stream reports the tasks it holds: those go on, the others fail now.

    Tasks already on ``stream_id`` were dispatched on this stream and may not have reached
    the node's first report; they are left alone. Each move is conditional on the task's
    stream being the one read, so a concurrent move by its previous hub wins or loses
    whole.
    """
    epoch = hubs.hold(session, member)
    rows = session.execute(
        select(Task.id, Task.stream_id).where(Task.node_id == node_id, Task.state.in_(IN_FLIGHT))
    ).all()
    older = [(task_id, sid) for task_id, sid in rows if sid != stream_id]
    adopted: list[str] = []
    lost: list[str] = []
    for task_id, sid in older:
        was = Task.stream_id.is_(None) if sid is None else Task.stream_id == sid
        if task_id in held:
            if _move(session, task_id, was, stream_id=stream_id, member=member, epoch=epoch):
                adopted.append(task_id)
        elif _finish(session, [task_id], FAILED, reason_lost, IN_FLIGHT, was):
            lost.append(task_id)
    if lost:
        changes.bump(session)
    ended = terminal_among(session, [task_id for task_id in held if task_id not in adopted])
    return Adoption(adopted=adopted, lost=lost, ended=ended)


def _move(
    session: Session,
    task_id: str,
    *conditions: ColumnElement[bool],
    stream_id: str,
    member: Member,
    epoch: int,
) -> bool:
    """Hand an in-flight task to ``member``'s stream (the node brought it there)."""
    return bool(
        affected(
            session.execute(
                update(Task)
                .where(Task.id == task_id, Task.state.in_(list(IN_FLIGHT)), *conditions)
                .values(stream_id=stream_id, hub_id=member.hub_id, hub_epoch=epoch)
                .execution_options(synchronize_session=False)
            )
        )
    )


def requeue_unsent(
    session: Session, task_ids: Collection[str], stream_id: str, *, member: Member
) -> int:
    """Put tasks claimed for a stream that closed before they were sent back to PENDING."""
    ids = list(task_ids)
    if not ids:
        return 0
    epoch = hubs.hold(session, member)
    requeued = affected(
        session.execute(
            update(Task)
            .where(
                Task.id.in_(ids),
                Task.state == DISPATCHED,
                Task.stream_id == stream_id,
                owned_by(member.hub_id, epoch),
            )
            .values(state=PENDING, hub_id=None, hub_epoch=None, stream_id=None, dispatched_at=None)
            .execution_options(synchronize_session=False)
        )
    )
    if requeued:
        changes.bump(session)
    return requeued


def fail_hub_tasks(session: Session, hub_id: str, reason: str) -> int:
    """FAIL every in-flight task of a dead hub, whatever its epoch (the survivor that
    recovers it holds its row locked, so its moves wait or have failed)."""
    ids = session.scalars(
        select(Task.id).where(Task.hub_id == hub_id, Task.state.in_(IN_FLIGHT))
    ).all()
    return _finish(session, ids, FAILED, reason, IN_FLIGHT, Task.hub_id == hub_id)


def fail_own_tasks(session: Session, member: Member, reason: str) -> int:
    """FAIL the in-flight tasks ``member`` holds at its epoch (a hub's drain at shutdown)."""
    epoch = hubs.hold(session, member)
    ids = session.scalars(
        select(Task.id).where(owned_by(member.hub_id, epoch), Task.state.in_(IN_FLIGHT))
    ).all()
    return _finish(session, ids, FAILED, reason, IN_FLIGHT, owned_by(member.hub_id, epoch))


def claim_pending(
    session: Session,
    node: Node,
    *,
    hub_id: str,
    stream_id: str,
    epoch: int | None = None,
    defaults: SandboxDefaults,
    limit: int = 64,
) -> list[Task]:
    """Move a node's pending tasks to DISPATCHED for this stream; forbidden ones to REJECTED.

    Forbidden: by the policy as it is now, or because the node's agent did not report a
    feature the policy needs (the error then starts with FAILED_PRECONDITION and names it).
    Each claim is a conditional UPDATE that records the hub and its ``epoch`` (which the
    caller got from ``hubs.hold`` in this transaction), so two hubs never dispatch the same
    task; on PostgreSQL the rows are read FOR UPDATE SKIP LOCKED, so a hub never waits on a
    task another is claiming.
    """
    if node.cordoned_at is not None:
        return []  # a cordoned node gets nothing new; its pending tasks wait (or expire)
    policy = effective_policy(node, defaults)
    now = clock.now()
    not_expired = or_(Task.expires_at.is_(None), Task.expires_at > now)
    unable = feature_violation(policy, node.capabilities or [], f"node {node.name} ({node.id})")
    pending = session.scalars(
        select(Task)
        .where(Task.node_id == node.id, Task.state == PENDING, not_expired)
        .order_by(Task.created_at, Task.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    claimed = []
    for task in pending:
        violation = task_violation(policy, task.argv or [], task.script, task.env) or unable
        values: dict[str, Any] = (
            {"state": REJECTED, "error": violation, "finished_at": now}
            if violation
            else {
                "state": DISPATCHED,
                "dispatched_at": now,
                "hub_id": hub_id,
                "hub_epoch": epoch,
                "stream_id": stream_id,
            }
        )
        won = affected(
            session.execute(
                update(Task)
                # Conditional on the expiry too: a task that expired meanwhile is never sent.
                .where(Task.id == task.id, Task.state == PENDING, not_expired)
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
    owner: tuple[str, int] | None = None,
) -> bool:
    """Apply a node's report on its task; reports on terminal or foreign tasks are ignored.

    With ``owner`` (hub id, epoch), only while the task is still that hub's at that epoch.
    """
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
    changed = bool(
        affected(
            session.execute(
                update(Task)
                .where(
                    Task.id == task_id,
                    Task.node_id == node_id,
                    Task.state.in_(list(allowed_from)),
                    *(() if owner is None else (owned_by(*owner),)),
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        )
    )
    if changed and state != RUNNING:
        changes.task_ended(session, [task_id])  # wakes `tasks wait` when this commits
    return changed


def append_output(session: Session, batch: Sequence[Append], *, max_output_bytes: int) -> int:
    """Add live output (``core.live_output``) to the stored output of tasks still in flight;
    return how many tasks got some. One read and one write per task for the whole batch;
    never past ``max_output_bytes`` a stream; a task that ended keeps its result's output.
    Bytes already stored are skipped by their offset; a run that starts past the stored
    end (bytes another hub received) is left out: the final result fills the gap."""
    by_task: dict[str, list[Append]] = {}
    for item in batch:
        by_task.setdefault(item.task_id, []).append(item)
    if not by_task:
        return 0
    rows = session.execute(
        select(Task.id, Task.stdout, Task.stderr).where(
            Task.id.in_(list(by_task)), Task.state.in_(list(IN_FLIGHT))
        )
    ).all()
    grew = []
    for task_id, stdout, stderr in rows:
        have = {STDOUT: bytes(stdout or b""), STDERR: bytes(stderr or b"")}
        for item in by_task[task_id]:
            current = have.get(item.stream)
            if current is None or item.offset > len(current):
                continue
            room = max_output_bytes - len(current)
            have[item.stream] = current + item.data[len(current) - item.offset :][: max(0, room)]
        if have[STDOUT] != stdout or have[STDERR] != stderr:
            session.execute(
                update(Task)
                .where(Task.id == task_id, Task.state.in_(list(IN_FLIGHT)))
                .values(stdout=have[STDOUT], stderr=have[STDERR])
                .execution_options(synchronize_session=False)
            )
            grew.append(task_id)
    if grew:
        changes.task_ended(session, grew)  # the same wake-up: `tasks logs -f`, WatchTask
    return len(grew)


@dataclass(frozen=True)
class Watched:
    """A task as a watcher sees it, with the byte length of each stored output stream."""

    task: TaskView
    stdout_bytes: int
    stderr_bytes: int


def watch_task(session: Session, ref: str) -> Watched:
    task = find_task(session, ref)
    node = session.get(Node, task.node_id)
    return Watched(view(task, node.name if node else ""), len(task.stdout), len(task.stderr))


@dataclass(frozen=True)
class UpdateOutcome:
    """What became of a node's report: the answer its TaskUpdateAck carries."""

    changed: bool  # the journal changed now
    accepted: bool  # the journal holds this report (now, or from an earlier copy)
    state: str  # the task's state in the journal ("" when there is no such task)
    reason: str = ""  # why not accepted
    moved: bool = False  # the task was another stream's (or epoch's): it is this one's now


def apply_update(
    session: Session,
    node_id: str,
    task_id: str,
    state: str,
    *,
    member: Member | None = None,
    stream_id: str | None = None,
    **result: Any,
) -> UpdateOutcome:
    """Record a node's report idempotently: the same result twice changes nothing and is
    accepted again; a result for a task that already ended otherwise is not accepted.

    With ``member`` (the hub the node's stream ``stream_id`` is on), the report moves the
    task only while it is that hub's at its epoch; an in-flight task another hub (or an
    older epoch) holds is first handed to this stream — the node brought it here — with a
    move conditional on the holder read.
    """
    owner = None
    if member is not None:
        owner = (member.hub_id, hubs.hold(session, member))
    if record_update(session, node_id, task_id, state, owner=owner, **result):
        return UpdateOutcome(changed=True, accepted=True, state=state)
    row = session.execute(
        select(Task.state, Task.error, Task.node_id, Task.hub_id, Task.hub_epoch).where(
            Task.id == task_id
        )
    ).first()
    if row is None or row.node_id != node_id:
        return UpdateOutcome(False, False, "", f"the journal has no task {task_id} of this node")
    if (
        owner is not None
        and member is not None
        and stream_id is not None
        and row.state in IN_FLIGHT
        and (row.hub_id, row.hub_epoch) != owner
        and _move(
            session,
            task_id,
            Task.hub_id.is_(None) if row.hub_id is None else Task.hub_id == row.hub_id,
            _same_epoch(row.hub_epoch),
            stream_id=stream_id,
            member=member,
            epoch=owner[1],
        )
        and record_update(session, node_id, task_id, state, owner=owner, **result)
    ):
        return UpdateOutcome(changed=True, accepted=True, state=state, moved=True)
    if row.state == state or (state == RUNNING and row.state == RUNNING):
        return UpdateOutcome(False, True, row.state)
    if row.state in TERMINAL:
        detail = f": {row.error}" if row.error else ""
        return UpdateOutcome(False, False, row.state, f"the task already ended {row.state}{detail}")
    return UpdateOutcome(False, False, row.state, f"the task is {row.state} in the journal")


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


def expire_tasks(session: Session, *, batch: int = 500, dry_run: bool = False) -> list[str]:
    """End EXPIRED the pending tasks whose expiry has passed; return their ids.

    The update is conditional on PENDING, so a task a hub claimed a moment earlier runs
    and one expired here is never dispatched (``claim_pending`` checks the expiry too).
    """
    now = clock.now()
    ids = list(
        session.scalars(
            select(Task.id)
            .where(Task.state == PENDING, Task.expires_at.is_not(None), Task.expires_at <= now)
            .order_by(Task.expires_at, Task.id)
            .limit(batch)
        )
    )
    if not ids or dry_run:
        return ids
    expired = list(
        session.scalars(
            update(Task)
            .where(Task.id.in_(ids), Task.state == PENDING)
            .values(
                state=EXPIRED,
                error="expired: no hub dispatched it to its node before its expiry",
                finished_at=now,
            )
            .returning(Task.id)
            .execution_options(synchronize_session=False)
        )
    )
    if expired:
        changes.bump(session)
        changes.task_ended(session, expired)
    return sorted(expired)


def task_logs(session: Session, ref: str) -> TaskLogs:
    """What the journal holds of a task's output so far."""
    return TaskLogs.of(get_task(session, ref))


# --- waiting on the journal ----------------------------------------------------------------

Sessions = Callable[[], AbstractContextManager[Session]]
"""Opens a read transaction (e.g. ``store.session``); each poll is one, so none is held."""

WAIT_POLL_S = 0.2
LOGS_POLL_S = 0.5


@dataclass(frozen=True)
class WaitResult:
    """How a wait ended: every task ended (``ended``, in the order asked), or the deadline
    passed with ``waiting`` still active (those that did end are in ``ended``)."""

    ended: list[TaskView]
    waiting: list[str]

    @property
    def timed_out(self) -> bool:
        return bool(self.waiting)


def wait(
    sessions: Sessions,
    task_ids: Sequence[str],
    *,
    deadline: Deadline | None = None,
    pause: Pause | None = None,
) -> WaitResult:
    """Poll the journal until every task has ended or ``deadline`` passes.

    One query per poll however many tasks a fan-out waits for; ``pause`` (default: every
    ``WAIT_POLL_S``) sleeps between polls and is never asked past the deadline.
    """
    ended: dict[str, TaskView] = {}

    def all_ended() -> bool:
        with sessions() as session:
            for task_id in terminal_among(session, [t for t in task_ids if t not in ended]):
                ended[task_id] = get_task(session, task_id)
        return len(ended) == len(task_ids)

    poll_until(all_ended, deadline=deadline, pause=pause or fixed_interval(WAIT_POLL_S))
    return WaitResult(
        [ended[t] for t in task_ids if t in ended], [t for t in task_ids if t not in ended]
    )


def follow_logs(sessions: Sessions, ref: str, *, pause: Pause | None = None) -> Iterator[TaskLogs]:
    """A task's output as the journal gets it: one ``TaskLogs`` per poll (every
    ``LOGS_POLL_S`` by default), the last one that of the ended task."""
    pause = pause or fixed_interval(LOGS_POLL_S)
    while True:
        with sessions() as session:
            current = task_logs(session, ref)
        yield current
        if current.ended:
            return
        ref = current.id
        pause(math.inf)
