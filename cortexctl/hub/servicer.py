"""AgentOrchestrator: thin adapters from the wire to core, through the store executor."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc

from cortexctl.core import journal, nodes
from cortexctl.core.sandbox import effective_policy
from cortexctl.errors import (
    CortexError,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from cortexctl.hub import convert
from cortexctl.hub.auth import NodeIdentity, bearer_credential
from cortexctl.hub.runtime import HubRuntime
from cortexctl.hub.streams import Close, NodeStream
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc

log = logging.getLogger("cortexctl.hub")
# Failures that count against a peer's allowance (a slow store is not the peer's fault).
AUTH_FAILURES = (Unauthenticated, PermissionDenied, InvalidArgument)


def _peer(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    return context.peer() or "unknown"


class AgentOrchestrator(pb_grpc.AgentOrchestratorServicer):
    def __init__(self, runtime: HubRuntime, sync_files: Any = None) -> None:
        self.rt = runtime
        self.sync_files = sync_files
        self.handshakes: Counter[str] = Counter()  # by outcome, for metrics
        self.task_updates: Counter[str] = Counter()  # by state, for metrics

    # --- handshake ---------------------------------------------------------------------

    async def SyncConfiguration(
        self, request: pb.SyncConfigurationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.NodeConfiguration:
        peer = _peer(context)
        try:
            self.rt.auth_failures.check(peer)
            reply = await self._handshake(request, context)
        except CortexError as err:
            self.handshakes[err.grpc_status.lower()] += 1
            if isinstance(err, AUTH_FAILURES):
                self.rt.auth_failures.failed(peer)
            raise
        self.handshakes["joined" if reply.node_credential else "rejoined"] += 1
        return reply

    async def _handshake(
        self, request: pb.SyncConfigurationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.NodeConfiguration:
        if self.rt.draining:
            raise Unavailable("the hub is shutting down; retry with another hub or later")
        if bool(request.invite_token) == bool(request.node_credential):
            raise InvalidArgument(
                "send exactly one of invite_token (first join) or node_credential (rejoin)"
            )
        opts = self.rt.options
        labels = dict(request.labels)
        if request.invite_token:
            joined = await self.rt.executor.session(
                self._join,
                request.invite_token,
                request,
                labels,
                write=True,
                timeout=opts.handshake_deadline_s,
            )
            node, policy, credential = joined
            log.info("node %s (%s) joined from %s", node.name, node.id, _peer(context))
        else:
            node, policy = await self.rt.executor.session(
                self._rejoin,
                request.node_credential,
                request,
                labels,
                write=True,
                timeout=opts.handshake_deadline_s,
            )
            credential = ""
            log.info("node %s (%s) rejoined from %s", node.name, node.id, _peer(context))
        return pb.NodeConfiguration(
            node_id=node.id,
            node_credential=credential,
            sandbox=convert.policy_to_pb(policy),
            heartbeat_interval_ms=int(opts.heartbeat_interval_s * 1000),
            max_chunk_bytes=opts.max_chunk_bytes,
            max_file_bytes=opts.max_file_bytes,
            hub_id=opts.hub_id,
        )

    def _join(
        self, session: Any, token: str, request: pb.SyncConfigurationRequest, labels: dict[str, str]
    ) -> Any:
        joined = nodes.join_with_invite(
            session,
            token,
            hostname=request.hostname,
            requested_name=request.requested_name,
            agent_version=request.agent_version,
            labels=labels,
            capabilities=list(request.capabilities),
        )
        return (
            joined.node,
            effective_policy(joined.node, self.rt.options.sandbox),
            joined.credential,
        )

    def _rejoin(
        self,
        session: Any,
        credential: str,
        request: pb.SyncConfigurationRequest,
        labels: dict[str, str],
    ) -> Any:
        node = nodes.rejoin(
            session,
            credential,
            hostname=request.hostname,
            agent_version=request.agent_version,
            labels=labels,
            capabilities=list(request.capabilities),
        )
        return node, effective_policy(node, self.rt.options.sandbox)

    async def authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> NodeIdentity:
        peer = _peer(context)
        self.rt.auth_failures.check(peer)
        try:
            credential = bearer_credential(context.invocation_metadata())
            return await self.rt.credentials.authenticate(credential)
        except AUTH_FAILURES:
            self.rt.auth_failures.failed(peer)
            raise

    # --- the highway -------------------------------------------------------------------

    async def TaskStream(
        self,
        request_iterator: AsyncIterator[pb.NodeMessage],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        if self.rt.draining:
            raise Unavailable("the hub is shutting down; reconnect shortly")
        who = await self.authenticate(context)
        opts = self.rt.options
        node, policy = await self.rt.executor.session(
            self._load_policy, who.node_id, timeout=opts.handshake_deadline_s
        )
        stream = NodeStream(node_id=who.node_id, node_name=who.name, peer=_peer(context))
        older = self.rt.streams.register(stream)
        if older is not None:
            older.close(f"superseded by a newer stream from {stream.peer}", "ABORTED")
        stream.send(convert.policy_message(policy))
        stream.policy_revision_sent = policy.revision
        log.info("%s connected from %s", stream.label, stream.peer)
        updates: asyncio.Queue[pb.TaskUpdate | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read(stream, request_iterator, updates))
        recorder = asyncio.create_task(self._record_updates(stream, updates))
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
            stream.close("the connection was lost")
            close = stream.closed
            raise
        finally:
            reader.cancel()
            updates.put_nowait(None)
            self.rt.spawn(self._stream_ended(stream, recorder), f"end-{stream.stream_id}")
        if close is not None and close.code is not None:
            await context.abort(getattr(grpc.StatusCode, close.code), close.reason)

    def _load_policy(self, session: Any, node_id: str) -> Any:
        node = nodes.resolve_node(session, node_id)
        return node, effective_policy(node, self.rt.options.sandbox)

    async def _read(
        self,
        stream: NodeStream,
        messages: AsyncIterator[pb.NodeMessage],
        updates: asyncio.Queue[pb.TaskUpdate | None],
    ) -> None:
        silence = 3 * self.rt.options.heartbeat_interval_s
        iterator = messages.__aiter__()
        try:
            while True:
                try:
                    message = await asyncio.wait_for(iterator.__anext__(), silence)
                except TimeoutError:
                    stream.close(f"sent no heartbeat for {silence:g}s (3 intervals)", "UNAVAILABLE")
                    return
                except StopAsyncIteration:
                    stream.close("the node closed its stream")
                    return
                kind = message.WhichOneof("body")
                if kind == "heartbeat":
                    self.rt.streams.heartbeat(stream, message.heartbeat.running_tasks)
                    stream.send(convert.heartbeat_ack(message.heartbeat.seq))
                elif kind == "task_update":
                    updates.put_nowait(message.task_update)
                elif kind == "policy_ack":
                    self.rt.streams.policy_acked(stream, message.policy_ack.revision)
                else:
                    stream.close("sent a NodeMessage with no body", "INVALID_ARGUMENT")
                    return
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the transport failed under us
            stream.close(f"the connection was lost ({type(err).__name__})")

    async def _record_updates(
        self, stream: NodeStream, updates: asyncio.Queue[pb.TaskUpdate | None]
    ) -> None:
        # Task results go to the store in order, on their own task, so a slow store never
        # holds up the reader (and with it, heartbeat acks).
        max_output = self.rt.options.sandbox.max_output_bytes
        while (update := await updates.get()) is not None:
            state = convert.PB_TO_STATE.get(update.state)
            if state is None or state in (journal.PENDING, journal.DISPATCHED):
                log.warning(
                    "%s reported task %s in state %s; ignored",
                    stream.label,
                    update.task_id,
                    update.state,
                )
                continue
            self.task_updates[state] += 1
            if state in journal.TERMINAL:
                stream.in_flight.discard(update.task_id)
            try:
                await self.rt.executor.session(
                    journal.record_update,
                    stream.node_id,
                    update.task_id,
                    state,
                    exit_code=update.exit_code,
                    stdout=update.stdout,
                    stderr=update.stderr,
                    output_truncated=update.output_truncated,
                    error=update.error,
                    max_output_bytes=max_output,
                    timeout=30.0,
                )
            except Exception:
                log.exception(
                    "could not record %s of task %s from %s", state, update.task_id, stream.label
                )

    async def _stream_ended(self, stream: NodeStream, recorder: asyncio.Task[None]) -> None:
        await asyncio.wait([recorder], timeout=30.0)
        current = self.rt.streams.unregister(stream)
        reason = stream.closed.reason if stream.closed else "the stream ended"
        log.info("%s disconnected: %s", stream.label, reason)
        diagnostic = f"{stream.label} lost its stream to hub {self.rt.hub_id}: {reason}"
        for attempt in range(5):
            try:
                failed = await self.rt.executor.session(
                    journal.fail_node_tasks,
                    stream.node_id,
                    diagnostic,
                    stream_id=None if current else stream.stream_id,
                    write=True,
                    timeout=30.0,
                )
            except Unavailable:
                await asyncio.sleep(0.5 * (attempt + 1))
                continue
            if failed:
                log.warning("failed %d unfinished task(s) of %s", failed, stream.label)
            return
        log.error(
            "could not fail the tasks of %s; `cortexctl journal fail %s` will",
            stream.label,
            stream.node_id,
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
