"""The reference node agent: join, keep one TaskStream open, run what the hub assigns.

It reconnects with exponential backoff and jitter, heartbeats at the interval the hub
announces, applies and acknowledges pushed policies, and runs tasks under the current
policy (checking it again itself; a task that breaks it is answered REJECTED).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from cortexctl import __version__
from cortexctl.agent.executor import Policy, TaskOutcome, TaskRunner, TaskSpec
from cortexctl.agent.state import Membership, load_membership, save_membership
from cortexctl.agent.syncer import (
    FailedUpload,
    SyncReport,
    UploadResult,
    WorkspaceSyncer,
    describe,
    upload_many,
    workspace_paths,
)
from cortexctl.agent.transport import Transport
from cortexctl.errors import CortexError, PermissionDenied, Unauthenticated, Unavailable, UsageError
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc

log = logging.getLogger("cortexctl.agent")

MODE_FROM_PB = {pb.SANDBOX_MODE_STRICT: "strict", pb.SANDBOX_MODE_PERMISSIVE: "permissive"}
STATE_TO_PB = {
    "succeeded": pb.SUCCEEDED,
    "failed": pb.FAILED,
    "timed_out": pb.TIMED_OUT,
    "rejected": pb.REJECTED,
    "cancelled": pb.CANCELLED,
}
FATAL_CODES = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
}


@dataclass
class AgentOptions:
    hub: str
    workspace: Path
    state_dir: Path
    token: str = ""
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    channel_factory: Callable[[str], grpc.aio.Channel] | None = None
    transport: Transport = field(default_factory=Transport)
    sync: bool = False  # upload the workspace on connect, then what changes
    sync_interval_s: float = 10.0


def policy_from_pb(message: pb.SandboxPolicy) -> Policy:
    # Anything but an explicit PERMISSIVE is treated as STRICT: fail closed.
    return Policy(
        mode=MODE_FROM_PB.get(message.mode, "strict"),
        allowed_commands=tuple(message.allowed_commands),
        max_runtime_s=message.max_runtime_s,
        max_output_bytes=message.max_output_bytes,
        revision=message.revision,
    )


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter, so a fleet does not reconnect in lockstep."""
    ceiling = min(cap, base * float(2 ** min(attempt, 20)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def rpc_error(err: grpc.aio.AioRpcError) -> CortexError:
    message = f"hub answered {err.code().name}: {err.details()}"
    if err.code() == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDenied(message)
    if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Unavailable(message)
    return Unauthenticated(message)


class Agent:
    def __init__(self, options: AgentOptions) -> None:
        self.opts = options
        self.runner = TaskRunner(options.workspace)
        self.policy = Policy(
            mode="strict", allowed_commands=(), max_runtime_s=0, max_output_bytes=0
        )
        self.membership: Membership | None = None
        self.stopping = asyncio.Event()
        self.connected = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.syncer = (
            WorkspaceSyncer(options.workspace, options.sync_interval_s) if options.sync else None
        )

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run until stopped; raise CortexError when the hub refuses this node for good."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        self.membership = load_membership(self.opts.state_dir)
        if self.membership is None and not self.opts.token:
            raise Unauthenticated(
                f"no credential in {self.opts.state_dir}: join first with "
                "--token TOKEN (from `cortexctl invites create`)"
            )
        self._channel = self._make_channel()
        attempt = 0
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    config = await self.handshake()
                    await self.stream(config)
                except grpc.aio.AioRpcError as err:
                    if err.code() in FATAL_CODES:
                        raise rpc_error(err) from None
                    log.warning("hub %s: %s: %s", self.opts.hub, err.code().name, err.details())
                if self.stopping.is_set():
                    break
                attempt = 0 if time.monotonic() - started > 30 else attempt + 1
                delay = backoff_delay(attempt, self.opts.backoff_base_s, self.opts.backoff_max_s)
                log.info("reconnecting in %.1fs", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
        finally:
            await self.runner.shutdown()
            await self._channel.close()

    def _make_channel(self) -> grpc.aio.Channel:
        if self.opts.channel_factory is not None:
            return self.opts.channel_factory(self.opts.hub)
        return self.opts.transport.channel(self.opts.hub)

    @property
    def stub(self) -> pb_grpc.AgentOrchestratorStub:
        assert self._channel is not None
        return pb_grpc.AgentOrchestratorStub(self._channel)  # type: ignore[no-untyped-call]

    async def handshake(self) -> pb.NodeConfiguration:
        request = pb.SyncConfigurationRequest(
            hostname=socket.gethostname(),
            agent_version=__version__,
            requested_name=self.opts.name,
            capabilities=["tasks", "sync"],
            labels=self.opts.labels,
        )
        if self.membership is not None:
            request.node_credential = self.membership.node_credential
        else:
            request.invite_token = self.opts.token
        config: pb.NodeConfiguration = await self.stub.SyncConfiguration(request, timeout=15)
        if config.node_credential:
            self.membership = Membership(
                hub=self.opts.hub,
                node_id=config.node_id,
                node_credential=config.node_credential,
                hub_id=config.hub_id,
            )
            path = save_membership(self.opts.state_dir, self.membership)
            log.info("joined as node %s; credential saved to %s", config.node_id, path)
        self.policy = policy_from_pb(config.sandbox)
        return config

    # --- one-off sync (`cortexctl agent sync`) ------------------------------------------

    async def sync_paths(
        self, paths: list[str], on_done: Callable[[str], None] | None = None
    ) -> SyncReport:
        """Upload the given files (folders expand) once with the stored credential."""
        self.membership = load_membership(self.opts.state_dir)
        if self.membership is None:
            raise UsageError(
                f"no credential in {self.opts.state_dir}: run `cortexctl agent --token ...` "
                "once to join, or point --state-dir at the agent's state"
            )
        report = SyncReport()
        rels, report.failed = workspace_paths(self.opts.workspace, paths)
        self._channel = self._make_channel()
        try:
            config = await self.handshake()
            outcomes = await upload_many(
                self.stub,
                self.membership.node_credential,
                self.opts.workspace,
                rels,
                config,
                on_done=on_done,
            )
        except grpc.aio.AioRpcError as err:
            raise rpc_error(err) from None
        finally:
            await self._channel.close()
        for rel, outcome in outcomes:
            if isinstance(outcome, UploadResult):
                report.uploaded.append(outcome)
            else:
                report.failed.append(FailedUpload(rel, describe(outcome)))
        return report

    # --- the stream --------------------------------------------------------------------

    async def stream(self, config: pb.NodeConfiguration) -> None:
        assert self.membership is not None
        outbox: asyncio.Queue[pb.NodeMessage] = asyncio.Queue()
        call = self.stub.TaskStream(
            metadata=[("authorization", f"Bearer {self.membership.node_credential}")]
        )
        interval = max(config.heartbeat_interval_ms, 50) / 1000
        writer = asyncio.create_task(self._write(call, outbox))
        beats = asyncio.create_task(self._heartbeats(outbox, interval))
        stopper = asyncio.create_task(self._close_on_stop(call))
        helpers = [writer, beats, stopper]
        if self.syncer is not None:
            credential = self.membership.node_credential
            helpers.append(asyncio.create_task(self.syncer.run(self.stub, credential, config)))
        try:
            async for message in call:
                self._handle(message, outbox)
            log.info("hub closed the stream")
        except asyncio.CancelledError:
            if not self.stopping.is_set():
                raise
            log.info("stopping: closed the stream to the hub")  # our own call.cancel()
        finally:
            self.connected.clear()
            for task in helpers:
                task.cancel()
            # Whatever ran for that stream is failed by the hub; do not leave it running.
            cancelled = self.runner.cancel_all("the stream to the hub ended")
            if cancelled:
                log.warning("cancelled %d running task(s): the stream ended", cancelled)

    async def _close_on_stop(self, call: Any) -> None:
        await self.stopping.wait()
        call.cancel()

    async def _write(self, call: Any, outbox: asyncio.Queue[pb.NodeMessage]) -> None:
        try:
            while True:
                await call.write(await outbox.get())
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            return  # the call ended; the reader sees why and reconnects

    async def _heartbeats(self, outbox: asyncio.Queue[pb.NodeMessage], interval: float) -> None:
        seq = 0
        while True:
            seq += 1
            outbox.put_nowait(
                pb.NodeMessage(
                    heartbeat=pb.Heartbeat(
                        seq=seq,
                        sent_unix_ms=int(time.time() * 1000),
                        running_tasks=self.runner.running,
                    )
                )
            )
            await asyncio.sleep(interval)

    def _handle(self, message: pb.HubMessage, outbox: asyncio.Queue[pb.NodeMessage]) -> None:
        kind = message.WhichOneof("body")
        if kind == "policy":
            self.policy = policy_from_pb(message.policy)
            outbox.put_nowait(
                pb.NodeMessage(policy_ack=pb.PolicyAck(revision=message.policy.revision))
            )
            if not self.connected.is_set():
                self.connected.set()
                log.info(
                    "connected to hub %s; sandbox %s (revision %d)",
                    self.opts.hub,
                    self.policy.mode,
                    self.policy.revision,
                )
            else:
                log.info(
                    "sandbox policy now %s (revision %d)", self.policy.mode, self.policy.revision
                )
        elif kind == "assign":
            task = asyncio.create_task(self._run_task(message.assign, outbox))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind == "cancel" and self.runner.cancel(message.cancel.task_id, message.cancel.reason):
            log.info("cancelling task %s: %s", message.cancel.task_id, message.cancel.reason)

    async def _run_task(
        self, assign: pb.TaskAssignment, outbox: asyncio.Queue[pb.NodeMessage]
    ) -> None:
        spec = TaskSpec(
            task_id=assign.task_id,
            argv=tuple(assign.argv),
            script=assign.script,
            timeout_s=assign.timeout_s,
            env=dict(assign.env),
            cwd=assign.cwd,
        )
        outbox.put_nowait(
            pb.NodeMessage(task_update=pb.TaskUpdate(task_id=spec.task_id, state=pb.RUNNING))
        )
        outcome = await self.runner.run(spec, self.policy)
        log.info(
            "task %s %s%s",
            spec.task_id,
            outcome.state,
            f": {outcome.error}" if outcome.error else "",
        )
        outbox.put_nowait(pb.NodeMessage(task_update=outcome_to_pb(spec.task_id, outcome)))


def outcome_to_pb(task_id: str, outcome: TaskOutcome) -> pb.TaskUpdate:
    return pb.TaskUpdate(
        task_id=task_id,
        state=STATE_TO_PB[outcome.state],
        exit_code=outcome.exit_code,
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        output_truncated=outcome.output_truncated,
        error=outcome.error,
    )
