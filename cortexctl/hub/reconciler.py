"""Makes connected nodes match the store: the CLI writes desired state, the hub follows.

It polls the change counter (one row) every poll interval, and on a change — or when a
stream connects — pushes new policies, dispatches pending tasks, sends cancels for tasks
the CLI ended, and closes the streams of revoked nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from cortexctl.core import changes, journal
from cortexctl.core.sandbox import EffectivePolicy, effective_policy
from cortexctl.hub import convert
from cortexctl.hub.runtime import HubRuntime
from cortexctl.hub.streams import NodeStream
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.store.models import Node, Task

log = logging.getLogger("cortexctl.hub")
FULL_PASS_S = 10.0  # a pass even without a change, as a safety net


@dataclass
class Plan:
    policies: dict[str, EffectivePolicy] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    rotated: set[str] = field(default_factory=set)
    assignments: dict[str, list[pb.HubMessage]] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)  # task id -> terminal state


class Reconciler:
    def __init__(self, runtime: HubRuntime) -> None:
        self.rt = runtime
        self.passes = 0

    async def run(self) -> None:
        seen: int | None = None
        last_pass = 0.0
        while True:
            try:
                current = await self.rt.executor.session(changes.current, timeout=10.0)
                woken = self.rt.wake_reconciler.is_set()
                self.rt.wake_reconciler.clear()
                if woken or current != seen or time.monotonic() - last_pass > FULL_PASS_S:
                    await self.reconcile()
                    seen, last_pass = current, time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.rt.wake_reconciler.wait(), self.rt.options.poll_interval_s
                )

    async def reconcile(self) -> None:
        streams = {
            stream.node_id: stream for stream in self.rt.streams.streams() if stream.closed is None
        }
        cached = self.rt.credentials.cached_hashes()
        plan = await self.rt.executor.session(self._plan, streams, cached, write=True, timeout=30.0)
        self.passes += 1
        for node_id in plan.revoked | plan.rotated:
            self.rt.credentials.forget(node_id)
        for node_id, stream in streams.items():
            if node_id in plan.revoked:
                stream.close(f"{stream.label} was revoked by an operator", "PERMISSION_DENIED")
                continue
            if node_id in plan.rotated:
                stream.close(
                    f"the credential of {stream.label} was rotated; use the new one",
                    "UNAUTHENTICATED",
                )
                continue
            policy = plan.policies.get(node_id)
            if policy is not None and policy.revision > stream.policy_revision_sent:
                stream.send(convert.policy_message(policy))
                stream.policy_revision_sent = policy.revision
                log.info(
                    "pushed policy revision %d (%s) to %s",
                    policy.revision,
                    policy.mode,
                    stream.label,
                )
            for task_id in list(stream.in_flight):
                if task_id in plan.ended:
                    stream.in_flight.discard(task_id)
                    stream.send(
                        convert.cancel(task_id, f"task ended {plan.ended[task_id]} in the journal")
                    )
            for message in plan.assignments.get(node_id, []):
                stream.in_flight.add(message.assign.task_id)
                stream.send(message)
        await self._fail_orphans(streams, plan)

    def _plan(
        self, session: Session, streams: dict[str, NodeStream], cached: dict[str, str]
    ) -> Plan:
        plan = Plan()
        ids = set(streams) | set(cached)
        if not ids:
            return plan
        # Columns only, not ORM objects: this runs on every change with every stream in it,
        # and a worker thread busy building objects holds the GIL the event loop needs.
        rows = session.execute(
            select(Node.id, Node.revoked_at, Node.credential_hash, Node.policy_revision).where(
                Node.id.in_(ids)
            )
        )
        stale_policy: set[str] = set()
        live: set[str] = set()
        for node_id, revoked_at, credential_hash, revision in rows:
            if revoked_at is not None:
                plan.revoked.add(node_id)
            elif node_id in cached and cached[node_id] != credential_hash:
                plan.rotated.add(node_id)
            elif node_id in streams:
                live.add(node_id)
                if revision > streams[node_id].policy_revision_sent:
                    stale_policy.add(node_id)
        pending = (
            set(
                session.scalars(
                    select(Task.node_id)
                    .where(Task.state == journal.PENDING, Task.node_id.in_(live))
                    .distinct()
                )
            )
            if live
            else set()
        )
        wanted = stale_policy | pending
        if wanted:
            for node in session.scalars(select(Node).where(Node.id.in_(wanted))):
                if node.id in stale_policy:
                    plan.policies[node.id] = effective_policy(node, self.rt.options.sandbox)
                if node.id not in pending:
                    continue
                claimed = journal.claim_pending(
                    session,
                    node,
                    hub_id=self.rt.hub_id,
                    stream_id=streams[node.id].stream_id,
                    defaults=self.rt.options.sandbox,
                )
                if claimed:
                    plan.assignments[node.id] = [convert.assignment(task) for task in claimed]
        in_flight = [task for stream in streams.values() for task in stream.in_flight]
        plan.ended = journal.terminal_among(session, in_flight)
        return plan

    async def _fail_orphans(self, streams: dict[str, NodeStream], plan: Plan) -> None:
        # A stream that closed while its tasks were being claimed will never run them.
        for node_id, messages in plan.assignments.items():
            stream = streams[node_id]
            if stream.closed is not None and messages:
                reason = (
                    f"{stream.label} lost its stream before the task was sent: "
                    f"{stream.closed.reason}"
                )
                await self.rt.executor.session(
                    journal.fail_node_tasks,
                    node_id,
                    reason,
                    stream_id=stream.stream_id,
                    write=True,
                    timeout=30.0,
                )
