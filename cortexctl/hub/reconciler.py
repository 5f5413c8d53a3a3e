"""Makes connected nodes match the store: the CLI writes desired state, the hub follows.

It polls the change counter (one row) every poll interval, and on a change — or when a
stream connects — pushes new policies, dispatches pending tasks, sends cancels for tasks
the CLI ended, and closes the streams of revoked nodes and of nodes whose newer stream is
on another hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from cortexctl.core import changes, dispatch, journal
from cortexctl.errors import Fenced, PermissionDenied, Unauthenticated
from cortexctl.hub import convert
from cortexctl.hub.runtime import HubRuntime
from cortexctl.hub.streams import NodeStream

log = logging.getLogger("cortexctl.hub")
FULL_PASS_S = 10.0  # a pass even without a change, as a safety net


class Reconciler:
    def __init__(self, runtime: HubRuntime) -> None:
        self.rt = runtime
        self.passes = 0

    async def run(self) -> None:
        seen: int | None = None
        last_pass = 0.0
        while True:
            try:
                if self.rt.fenced:
                    raise Fenced("the hub is fenced")  # it moves nothing until it rejoins
                current = await self.rt.executor.session(changes.current, timeout=10.0)
                woken = self.rt.wake_reconciler.is_set()
                self.rt.wake_reconciler.clear()
                if woken or current != seen or time.monotonic() - last_pass > FULL_PASS_S:
                    await self.reconcile()
                    seen, last_pass = current, time.monotonic()
            except asyncio.CancelledError:
                raise
            except Fenced:
                seen = None  # a full pass once it has rejoined
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
        plan = await self.rt.executor.session(
            dispatch.plan,
            streams,
            cached,
            member=self.rt.member,
            defaults=self.rt.options.sandbox,
            draining=self.rt.draining or self.rt.fenced,
            assign=convert.assignment,
            write=True,
            timeout=30.0,
        )
        self.passes += 1
        for node_id in plan.revoked | plan.rotated:
            self.rt.credentials.forget(node_id)
        for node_id in plan.revoked:
            self.rt.uploads.cut(
                node_id, PermissionDenied(f"node {node_id} was revoked by an operator")
            )
        for node_id in plan.rotated:
            self.rt.uploads.cut(
                node_id, Unauthenticated(f"the credential of node {node_id} was rotated")
            )
        for node_id, (hub_id, gen) in plan.superseded.items():
            # The safety net behind the NOTIFY (a lost note, a LISTEN reconnecting).
            self.rt.streams.superseded(node_id, gen, hub_id)
        for node_id, stream in streams.items():
            if node_id in plan.superseded:
                continue
            if node_id in plan.revoked:
                stream.close(f"{stream.label} was revoked by an operator", PermissionDenied)
                continue
            if node_id in plan.rotated:
                stream.close(
                    f"the credential of {stream.label} was rotated; use the new one",
                    Unauthenticated,
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
            unsent = []
            for message in plan.assignments.get(node_id, []):
                task_id = message.assign.task_id
                if stream.send(message):
                    stream.in_flight.add(task_id)
                else:
                    unsent.append(task_id)
            if unsent:
                await self._requeue(stream, unsent)

    async def _requeue(self, stream: NodeStream, task_ids: list[str]) -> None:
        # Claimed for a stream that closed before they were sent: they never left the hub,
        # so they are pending again, not failed.
        await self.rt.executor.session(
            journal.requeue_unsent,
            task_ids,
            stream.stream_id,
            member=self.rt.member,
            write=True,
            timeout=30.0,
        )
        log.info(
            "%d task(s) for %s go back to pending: its stream closed", len(task_ids), stream.label
        )
