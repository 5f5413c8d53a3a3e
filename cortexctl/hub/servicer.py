"""AgentOrchestrator: thin adapters from the wire to core, through the store executor."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from cortexctl.core import journal, nodes
from cortexctl.core.sandbox import EffectivePolicy
from cortexctl.core.secrets import NODE_PREFIX, split_token
from cortexctl.core.stream_open import OpenedStream, OpenRequest, open_streams
from cortexctl.errors import (
    CortexError,
    Fenced,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from cortexctl.hub import convert
from cortexctl.hub.auth import NodeIdentity, bearer_credential
from cortexctl.hub.batching import Batcher
from cortexctl.hub.executor import rpc_deadline
from cortexctl.hub.interceptors import status_code
from cortexctl.hub.ratelimit import MALFORMED, guess_target
from cortexctl.hub.runtime import HubRuntime
from cortexctl.hub.stalls import ConditionLog
from cortexctl.hub.streams import Close, NodeStream
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc

log = logging.getLogger("cortexctl.hub")
# Waits between attempts to record a result; after the last the node sends it again.
RECORD_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 3.0)
# A stream open whose store work finds the queue full waits this long for its turn (a
# reconnect storm after a restart) instead of being refused.
STREAM_OPEN_WAIT_S = 20.0


@dataclass(frozen=True)
class Held:
    """The tasks a node reported holding on the first heartbeat of a stream."""

    task_ids: tuple[str, ...]


StreamWork = pb.TaskUpdate | Held | None
# Failures that count against a target's allowance (a slow store is not the peer's fault).
AUTH_FAILURES = (Unauthenticated, PermissionDenied, InvalidArgument)


def _peer(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    return context.peer() or "unknown"


class AgentOrchestrator(pb_grpc.AgentOrchestratorServicer):
    def __init__(self, runtime: HubRuntime, sync_files: Any = None) -> None:
        self.rt = runtime
        self.sync_files = sync_files
        self.handshakes: Counter[str] = Counter()  # by outcome, for metrics
        self.task_updates: Counter[str] = Counter()  # by state, for metrics
        self.oversized_messages = 0  # over max_message_bytes, for metrics
        self.record_failures = ConditionLog(log, "recording task results")
        # Stream opens arriving together (a reconnect storm) share a store transaction.
        self.opens: Batcher[OpenRequest, OpenedStream] = Batcher(
            runtime.executor,
            self._open_streams,
            what="stream opens",
            timeout_s=max(runtime.options.handshake_deadline_s, STREAM_OPEN_WAIT_S),
        )

    # --- handshake ---------------------------------------------------------------------

    async def SyncConfiguration(
        self, request: pb.SyncConfigurationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.NodeConfiguration:
        peer = _peer(context)
        target = guess_target(request.invite_token, request.node_credential)
        try:
            if not (request.node_credential and self.rt.credentials.known(request.node_credential)):
                self.rt.auth_failures.check(peer, target)
            reply = await self._handshake(request, context)
        except CortexError as err:
            self.handshakes[err.grpc_status.lower()] += 1
            if isinstance(err, AUTH_FAILURES):
                self.rt.auth_failures.failed(peer, target)
            raise
        self.handshakes["joined" if reply.node_credential else "rejoined"] += 1
        return reply

    async def _handshake(
        self, request: pb.SyncConfigurationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.NodeConfiguration:
        if self.rt.draining:
            raise Unavailable("the hub is shutting down; retry with another hub or later")
        if self.rt.fenced:
            raise Unavailable(
                "the hub was taken over by another hub and is rejoining; retry with another "
                "hub or shortly"
            )
        opts = self.rt.options
        peer = _peer(context)
        done = await self.rt.executor.session(
            nodes.handshake,
            convert.handshake_request(request, peer),
            opts.sandbox,
            write=True,
            deadline=rpc_deadline(context, opts.handshake_deadline_s),
        )
        log.info(
            "node %s (%s) %s from %s",
            done.name,
            done.node_id,
            "joined" if done.joined else "rejoined",
            peer,
        )
        return convert.node_configuration(done, opts)

    async def authenticate(
        self, context: grpc.aio.ServicerContext[Any, Any], *, wait_s: float = 0.0
    ) -> NodeIdentity:
        credential, target = self._credential(context)
        try:
            return await self.rt.credentials.authenticate(credential, wait_s=wait_s)
        except AUTH_FAILURES:
            self.rt.auth_failures.failed(_peer(context), target)
            raise

    def _credential(self, context: grpc.aio.ServicerContext[Any, Any]) -> tuple[str, str]:
        """The call's bearer credential and its rate-limit target, once the peer may try."""
        peer = _peer(context)
        limiter = self.rt.auth_failures
        try:
            credential = bearer_credential(context.invocation_metadata())
        except Unauthenticated:
            limiter.check(peer, MALFORMED)
            limiter.failed(peer, MALFORMED)
            raise
        target = guess_target(credential=credential)
        if not self.rt.credentials.known(credential):  # a verified node is never held back
            limiter.check(peer, target)
        return credential, target

    async def _open(
        self, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[NodeStream, EffectivePolicy, str | None]:
        """Authenticate and open a stream: the stream, the node's policy and the hub the
        node moved from (if any). A credential not verified recently is verified in the
        stream open's own (batched) transaction."""
        credential, target = self._credential(context)
        who = self.rt.credentials.cached(credential)
        parts = split_token(NODE_PREFIX, credential)
        if parts is None:
            self.rt.auth_failures.failed(_peer(context), target)
            raise Unauthenticated("malformed node credential; rejoin with a new invite")
        stream = NodeStream(node_id=parts[0], node_name="", peer=_peer(context))
        try:
            opened = await self.opens.submit(
                OpenRequest(
                    node_id=stream.node_id,
                    stream_id=stream.stream_id,
                    peer=stream.peer,
                    credential=None if who is not None else credential,
                )
            )
        except AUTH_FAILURES:
            self.rt.auth_failures.failed(stream.peer, target)
            raise
        if who is None:
            self.rt.credentials.remember(credential, NodeIdentity(stream.node_id, opened.node_name))
        stream.node_name = opened.node_name
        stream.gen = opened.claim.gen
        stream.journal_in_flight = opened.work_in_flight
        return stream, opened.policy, opened.claim.moved_from

    # --- the highway -------------------------------------------------------------------

    async def TaskStream(
        self,
        request_iterator: AsyncIterator[pb.NodeMessage],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        if self.rt.draining:
            raise Unavailable("the hub is shutting down; reconnect shortly")
        if self.rt.fenced:
            raise Unavailable("the hub was taken over by another hub and is rejoining")
        stream, policy, moved_from = await self._open(context)
        if moved_from is not None:
            log.info(
                "%s moved here from hub %s (stream generation %d)",
                stream.label,
                moved_from,
                stream.gen,
            )
        self.rt.streams.register(stream)  # closes the older stream of the two
        stream.send(convert.policy_message(policy))
        stream.policy_revision_sent = policy.revision
        log.info("%s connected from %s", stream.label, stream.peer)
        work: asyncio.Queue[StreamWork] = asyncio.Queue()
        reader = asyncio.create_task(self._read(stream, request_iterator, work))
        watchdog = asyncio.create_task(self._watch_silence(stream))
        recorder = asyncio.create_task(self._record_updates(stream, work))
        self.rt.wake_reconciler.set()  # dispatch what is pending for this node now
        close: Close | None = None
        try:
            while True:
                item = await stream.outbox.get()
                if isinstance(item, Close):
                    close = item
                    break
                await context.write(item)
        except asyncio.CancelledError:
            stream.close(f"the connection of {stream.label} dropped (node or network side)")
            close = stream.closed
            raise
        finally:
            reader.cancel()
            watchdog.cancel()
            work.put_nowait(None)
            self.rt.spawn(self._stream_ended(stream, recorder), f"end-{stream.stream_id}")
        if close is not None and close.error is not None:
            await context.abort(status_code(close.error), str(close.error))

    def _open_streams(
        self, session: Any, requests: list[OpenRequest]
    ) -> list[OpenedStream | CortexError]:
        opts = self.rt.options
        return open_streams(
            session,
            requests,
            hub_id=self.rt.hub_id,
            heartbeat_interval_s=opts.heartbeat_interval_s,
            defaults=opts.sandbox,
        )

    async def _read(
        self,
        stream: NodeStream,
        messages: AsyncIterator[pb.NodeMessage],
        work: asyncio.Queue[StreamWork],
    ) -> None:
        try:
            async for message in messages:
                stream.last_heard = time.monotonic()
                kind = message.WhichOneof("body")
                if kind == "heartbeat":
                    beat = message.heartbeat
                    self.rt.streams.heartbeat(stream, beat.running_tasks)
                    stream.send(convert.heartbeat_ack(beat.seq))
                    if not stream.reported_held:
                        # The first heartbeat names what the node still holds; it is
                        # handled after the results sent before it. A node holding
                        # nothing, with nothing in flight in the journal when its stream
                        # opened, has nothing to adopt or fail: no store call.
                        stream.reported_held = True
                        if beat.running_task_ids or stream.journal_in_flight:
                            work.put_nowait(Held(tuple(beat.running_task_ids)))
                elif kind == "task_update":
                    self._check_size(stream, message)
                    work.put_nowait(message.task_update)
                elif kind == "policy_ack":
                    self.rt.streams.policy_acked(stream, message.policy_ack.revision)
                elif kind == "task_output":
                    self._live_output(stream, message.task_output)
                else:
                    stream.close("sent a NodeMessage with no body", InvalidArgument)
                    return
            stream.close(f"{stream.label} closed its stream")
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the transport failed under us
            stream.close(
                f"the connection of {stream.label} dropped ({type(err).__name__}; "
                "node or network side)"
            )

    def _live_output(self, stream: NodeStream, output: pb.TaskOutput) -> None:
        """Output of a task this stream holds: to its watchers now, to the store in the
        next batch (``jobs``: output_flush); within the output cap, repeats dropped."""
        if output.task_id not in stream.in_flight:
            return  # not this stream's task (ended, or the node moved): the result has it
        chunk = self.rt.live_output.accept(
            output.task_id, int(output.stream), output.offset, output.data
        )
        if chunk is not None:
            self.rt.task_watches.output(chunk)

    def _check_size(self, stream: NodeStream, message: pb.NodeMessage) -> None:
        """Name a node whose message is over the announced limit (it is still recorded,
        within the output caps, and the stream goes on)."""
        limit = self.rt.options.max_message_bytes
        size = message.ByteSize()
        if size > limit:
            self.oversized_messages += 1
            log.warning(
                "%s sent a %d-byte task update (task %s), over the hub's limit of %d bytes "
                "(max_message_bytes, announced in the handshake); recorded anyway, within "
                "the output caps — upgrade the node's agent so its results fit",
                stream.label,
                size,
                message.task_update.task_id,
                limit,
            )

    async def _watch_silence(self, stream: NodeStream) -> None:
        """Close a stream whose node sent nothing for 3 intervals while this hub ran."""
        interval = self.rt.options.heartbeat_interval_s
        silence = 3 * interval
        monitor = self.rt.loop_monitor
        while stream.closed is None:
            await asyncio.sleep(min(interval / 2, 1.0))
            quiet = monitor.quiet_since(stream.last_heard)
            if quiet is None or quiet < silence:
                if quiet is not None and time.monotonic() - stream.last_heard >= silence:
                    monitor.fresh_graces += 1  # silent only across our own stall: spared
                continue
            stream.close(
                f"{stream.label} sent nothing for {quiet:.0f}s ({silence:g}s = 3 heartbeat "
                f"intervals) while hub {self.rt.hub_id} was running: the node or its "
                "network went silent",
                Unavailable,
            )

    async def _record_updates(self, stream: NodeStream, work: asyncio.Queue[StreamWork]) -> None:
        # Task results go to the store in order, on their own task, so a slow store never
        # holds up the reader (and with it, heartbeat acks).
        while (item := await work.get()) is not None:
            if isinstance(item, Held):
                await self._adopt(stream, item.task_ids)
                continue
            state = convert.PB_TO_STATE.get(item.state)
            if state is None or state in (journal.PENDING, journal.DISPATCHED):
                log.warning(
                    "%s reported task %s in state %s; ignored",
                    stream.label,
                    item.task_id,
                    item.state,
                )
                continue
            self.task_updates[state] += 1
            outcome = await self._record_update(stream, item, state)
            if outcome is None:
                continue  # not recorded; the node keeps the result and sends it again
            if outcome.changed:
                self.rt.task_watches.changed((item.task_id,))  # WaitTask/WatchTask now
            if state in journal.TERMINAL or outcome.state in journal.TERMINAL:
                self.rt.live_output.forget(item.task_id)  # the result holds the output
            if outcome.moved and state not in journal.TERMINAL:
                stream.in_flight.add(item.task_id)  # the node brought it from another stream
            if state in journal.TERMINAL:
                if outcome.accepted or outcome.state in journal.TERMINAL:
                    stream.in_flight.discard(item.task_id)
                stream.send(convert.update_ack(item, outcome))
                if not outcome.accepted:
                    log.info(
                        "%s reported %s for task %s: not accepted (%s)",
                        stream.label,
                        state,
                        item.task_id,
                        outcome.reason,
                    )
            elif outcome.state in journal.TERMINAL:
                stream.in_flight.discard(item.task_id)
                stream.send(convert.cancel(item.task_id, outcome.reason))

    async def _record_update(
        self, stream: NodeStream, update: pb.TaskUpdate, state: str
    ) -> journal.UpdateOutcome | None:
        """Record with bounded retries; acknowledged by the caller only after the commit."""
        for delay in (*RECORD_RETRY_DELAYS_S, None):
            try:
                outcome = await self.rt.executor.session(
                    journal.apply_update,
                    stream.node_id,
                    update.task_id,
                    state,
                    member=self.rt.member,
                    stream_id=stream.stream_id,
                    exit_code=update.exit_code,
                    stdout=update.stdout,
                    stderr=update.stderr,
                    output_truncated=update.output_truncated,
                    error=update.error,
                    max_output_bytes=self.rt.options.sandbox.max_output_bytes,
                    write=True,
                    timeout=10.0,
                )
            except Fenced:
                return None  # the fence closes this stream; the node sends it elsewhere
            except CortexError as err:
                self.record_failures.failed(str(err))
                if delay is None:
                    log.debug(
                        "gave up recording %s of task %s from %s for now; the node sends it again",
                        state,
                        update.task_id,
                        stream.label,
                    )
                    return None
                await asyncio.sleep(delay)
                continue
            self.record_failures.ok()
            return outcome
        return None  # pragma: no cover - the loop always returns

    async def _adopt(self, stream: NodeStream, held: tuple[str, ...]) -> None:
        """Tasks of an older stream the node still holds go on here; the rest fail now."""
        reason = (
            f"{stream.label} came back to hub {self.rt.hub_id} without the task "
            "(its agent restarted or lost it)"
        )
        for delay in (*RECORD_RETRY_DELAYS_S, None):
            try:
                adoption = await self.rt.executor.session(
                    journal.adopt_tasks,
                    stream.node_id,
                    stream_id=stream.stream_id,
                    member=self.rt.member,
                    held=set(held),
                    reason_lost=reason,
                    write=True,
                    timeout=10.0,
                )
            except Fenced:
                return  # the fence closes this stream
            except CortexError as err:
                if delay is None:
                    log.warning("could not adopt the tasks %s still holds: %s", stream.label, err)
                    return
                await asyncio.sleep(delay)
                continue
            stream.in_flight.update(adoption.adopted)
            if adoption.adopted:
                log.info(
                    "%s came back holding %d in-flight task(s); they go on",
                    stream.label,
                    len(adoption.adopted),
                )
            if adoption.lost:
                log.warning(
                    "%s came back without %d in-flight task(s); failed them",
                    stream.label,
                    len(adoption.lost),
                )
            for task_id, state in adoption.ended.items():
                stream.send(convert.cancel(task_id, f"task already ended {state} in the journal"))
            return

    async def _stream_ended(self, stream: NodeStream, recorder: asyncio.Task[None]) -> None:
        await asyncio.wait([recorder], timeout=30.0)
        self.rt.streams.unregister(stream)
        reason = stream.closed.reason if stream.closed else "the stream ended"
        log.info("%s disconnected: %s", stream.label, reason)
        if self.rt.draining:
            return  # the drain fails (or has finished) what this hub still holds
        if self.rt.fenced:
            return  # another hub took over: it failed what this stream held
        member = self.rt.member
        grace = self.rt.options.lost_node_grace_s
        diagnostic = (
            f"{stream.label} lost its stream to hub {self.rt.hub_id} ({reason}) and did not "
            f"come back within the {grace:g}s grace"
        )
        await self.rt.after_grace(
            grace,
            lambda session: journal.fail_stream_tasks(
                session, [stream.stream_id], diagnostic, member=member
            ),
            what=f"the in-flight tasks of {stream.label}",
        )

    # --- file sync ---------------------------------------------------------------------

    async def SyncFile(
        self,
        request_iterator: AsyncIterator[pb.FileChunk],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.FileSyncResult:
        if self.sync_files is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "file sync is not enabled")
        who = await self.authenticate(context)
        result: pb.FileSyncResult = await self.sync_files.receive(who, request_iterator, context)
        return result
