"""The reference node agent: join, keep one TaskStream open, run what the hub assigns.

It reconnects with exponential backoff and jitter, heartbeats at the interval the hub
announces, applies and acknowledges pushed policies, and runs tasks under the current
policy (checking it again itself; a task that breaks it is answered REJECTED).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc

from cortexctl import __version__
from cortexctl.agent.executor import Policy, TaskOutcome, TaskRunner, TaskSpec
from cortexctl.agent.failover import HubRing
from cortexctl.agent.isolation import Isolation, TaskLimits, root_process_limit_warning
from cortexctl.agent.output import OutputSender
from cortexctl.agent.reaper import Containment
from cortexctl.agent.results import DEFAULT_MAX_MESSAGE_BYTES, fit_output
from cortexctl.agent.state import (
    Membership,
    StateLock,
    SyncedFile,
    check_state_dir,
    load_membership,
    load_sync_record,
    save_membership,
    save_sync_record,
)
from cortexctl.agent.syncer import (
    FailedUpload,
    SyncReport,
    UploadResult,
    WorkspaceSyncer,
    describe,
    unchanged_since,
    upload_many,
    workspace_paths,
)
from cortexctl.agent.transport import (
    CLOSED_BEFORE_JOIN_LIMIT,
    Transport,
    closed_by_peer,
    closed_hint,
    probe_tls,
    retryable,
    rpc_error,
    tls_failure,
)
from cortexctl.agent.unacked import UnackedResults
from cortexctl.core import clock, features
from cortexctl.errors import ConfigError, InvalidArgument, Unauthenticated
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


@dataclass
class AgentOptions:
    hub: str
    workspace: Path
    state_dir: Path
    token: str = ""
    token_source: str = ""  # "flag", "file", "env" or "" (none)
    rejoin: bool = False  # discard the stored credential and join afresh with the token
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    channel_factory: Callable[[str], grpc.aio.Channel] | None = None
    transport: Transport = field(default_factory=Transport)
    sync: bool = False  # upload the workspace on connect, then what changes
    sync_interval_s: float = 10.0
    isolation: Isolation = field(default_factory=Isolation)  # how tasks are contained


def policy_from_pb(message: pb.SandboxPolicy) -> Policy:
    # Anything but an explicit PERMISSIVE is treated as STRICT: fail closed.
    return Policy(
        mode=MODE_FROM_PB.get(message.mode, "strict"),
        allowed_commands=tuple(message.allowed_commands),
        max_runtime_s=message.max_runtime_s,
        max_output_bytes=message.max_output_bytes,
        revision=message.revision,
        allowed_env=tuple(message.allowed_env),
        allowed_prefixes=tuple(tuple(p.argv) for p in message.allowed_prefixes if p.argv),
        deny_network=message.deny_network,
        limits=TaskLimits(
            cpu_seconds=message.limits.cpu_seconds,
            address_space_bytes=message.limits.address_space_bytes,
            processes=message.limits.processes,
            file_size_bytes=message.limits.file_size_bytes,
            open_files=message.limits.open_files,
        ),
    )


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter, so a fleet does not reconnect in lockstep."""
    ceiling = min(cap, base * float(2 ** min(attempt, 20)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class Agent:
    def __init__(self, options: AgentOptions) -> None:
        self.opts = options
        self.hubs = HubRing.parse(options.hub)  # --hub may name several: fail over
        self.containment = Containment(options.state_dir)
        self.runner = TaskRunner(
            options.workspace, containment=self.containment, isolation=options.isolation
        )
        self.results = UnackedResults(options.state_dir)
        self._outbox: asyncio.Queue[pb.NodeMessage] | None = None  # the current stream's
        self._grace_s = 10.0  # how long tasks outlive a lost stream (the hub says how long)
        self._resend_after_s = 15.0
        self.live_output = False  # the hub lists features.TASK_OUTPUT (set by the handshake)
        self._orphan_timer: asyncio.Task[None] | None = None
        self.policy = Policy(
            mode="strict", allowed_commands=(), max_runtime_s=0, max_output_bytes=0
        )
        self._root_warned = False  # root_process_limit_warning is logged once
        self.membership: Membership | None = None
        self.max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES  # as the hub announces it
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
        check_state_dir(self.opts.state_dir)
        with StateLock(self.opts.state_dir):
            await self._run_locked()

    async def _run_locked(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        self.membership = self.membership_to_use(load_membership(self.opts.state_dir))
        self._recover_previous_run()  # before reporting in: the node and journal agree
        self._channel = self._make_channel()
        attempt = 0
        failed_before_join = 0
        ever_connected = False
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    config = await self.handshake()
                    self._warn_of_unbound_limits()
                    ever_connected = True
                    await self.stream(config)
                except grpc.aio.AioRpcError as err:
                    if not retryable(err):
                        raise rpc_error(err) from None
                    if not ever_connected:
                        # Every failure counts, not only "closed": gRPC reports the last
                        # address it tried, and "localhost" gives ::1 (refused) as often
                        # as 127.0.0.1 (closed by a TLS hub) when the hub binds IPv4 only.
                        # The probe tries every address; only a TLS mismatch ends the run.
                        failed_before_join += 1
                        await self._end_on_tls_mismatch(err, failed_before_join)
                    log.warning("hub %s: %s: %s", self.hubs.current, err.code().name, err.details())
                    await self._next_hub()
                if self.stopping.is_set():
                    break
                attempt = 0 if time.monotonic() - started > 30 else attempt + 1
                delay = backoff_delay(attempt, self.opts.backoff_base_s, self.opts.backoff_max_s)
                if self._held_task_ids():
                    # Work is at stake: come back well within the hub's lost-node grace.
                    delay = min(delay, max(0.25, self._grace_s / 5))
                log.info("reconnecting in %.1fs", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
        finally:
            await self._stop_tasks()
            await self._channel.close()

    async def _end_on_tls_mismatch(self, err: grpc.aio.AioRpcError, closed_count: int) -> None:
        """Stop retrying when the failure is a TLS mismatch no retry can fix."""
        transport, hub = self.opts.transport, self.hubs.current.address
        hint = tls_failure(transport, hub, err.code().name, err.details() or "")
        if hint is None and closed_count >= CLOSED_BEFORE_JOIN_LIMIT:
            hint = closed_hint(transport, hub, await asyncio.to_thread(probe_tls, hub))
        if hint is not None:
            raise ConfigError(f"cannot connect: {hint}")

    def _recover_previous_run(self) -> None:
        """Load unacknowledged results and kill what the previous run left running."""
        held = self.results.load()
        leftovers = self.containment.reap_leftovers()
        for left in leftovers:
            if left.task_id in self.results:
                continue  # it finished and its result is kept: that is what the hub gets
            self.results.keep(
                pb.TaskUpdate(
                    task_id=left.task_id,
                    state=pb.FAILED,
                    exit_code=-1,
                    error=(
                        "the agent restarted while the task ran (it was killed or crashed); "
                        f"killed {left.killed} leftover process(es) of the task"
                    ),
                )
            )
        if held or leftovers:
            log.info(
                "previous run: %d unacknowledged result(s), %d task(s) left running",
                held,
                len(leftovers),
            )

    async def _stop_tasks(self) -> None:
        await self.runner.shutdown()
        if self._tasks:  # their results are kept (on disk) before the loop ends
            await asyncio.wait(list(self._tasks), timeout=10.0)

    def membership_to_use(self, stored: Membership | None) -> Membership | None:
        return membership_to_use(self.opts, stored)

    def _make_channel(self) -> grpc.aio.Channel:
        if self.opts.channel_factory is not None:
            return self.opts.channel_factory(self.hubs.current.address)
        current = self.hubs.current
        return self.opts.transport.channel(current.address, current.name)

    async def _next_hub(self) -> None:
        """With several hubs, move to the next one after losing this one."""
        if not self.hubs.several or self.stopping.is_set():
            return
        assert self._channel is not None
        await self._channel.close()
        endpoint = await asyncio.to_thread(self.hubs.advance)
        log.info("trying hub %s next", endpoint)
        self._channel = self._make_channel()

    @property
    def stub(self) -> pb_grpc.AgentOrchestratorStub:
        assert self._channel is not None
        return pb_grpc.AgentOrchestratorStub(self._channel)  # type: ignore[no-untyped-call]

    async def handshake(self) -> pb.NodeConfiguration:
        request = pb.SyncConfigurationRequest(
            hostname=socket.gethostname(),
            agent_version=__version__,
            requested_name=self.opts.name,
            capabilities=[
                features.TASKS,
                features.SYNC,
                features.RESULT_ACK,
                features.TASK_OUTPUT,
                *self.opts.isolation.capabilities(),
            ],
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
                node_name=config.node_name,
            )
            path = save_membership(self.opts.state_dir, self.membership)
            log.info("joined as node %s; credential saved to %s", self.membership.label, path)
        elif self.membership is not None and (
            self.membership.hub != self.opts.hub
            or (config.node_name and config.node_name != self.membership.node_name)
        ):
            # Remember the hub last reached, so later runs need no --hub, and the name the
            # hub gives (renamed by an operator, or a file from an older agent).
            self.membership = replace(
                self.membership,
                hub=self.opts.hub,
                node_name=config.node_name or self.membership.node_name,
            )
            save_membership(self.opts.state_dir, self.membership)
        if not config.node_credential and self.membership is not None:
            log.info("rejoined as node %s", self.membership.label)
        self.policy = policy_from_pb(config.sandbox)
        self.max_message_bytes = config.max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES
        # Live output only to a hub that takes it (an older hub would drop it anyway).
        self.live_output = features.TASK_OUTPUT in config.hub_features
        return config

    # --- one-off sync (`cortexctl agent sync`) ------------------------------------------

    async def sync_paths(
        self,
        paths: list[str],
        on_done: Callable[[str], None] | None = None,
        *,
        force: bool = False,
    ) -> SyncReport:
        """Upload the given files (folders expand) once with the stored credential.

        Files the sync record shows unchanged since they were sent are skipped (unless
        ``force``); the record lives in the state dir, per node and hub.
        """
        check_state_dir(self.opts.state_dir, create=False)
        self.membership = load_membership(self.opts.state_dir)
        if self.membership is None:
            raise InvalidArgument(
                f"no credential in {self.opts.state_dir}: run `cortexctl agent --token-file ...` "
                "once to join, or point --state-dir at the agent's state"
            )
        report = SyncReport()
        rels, report.failed = workspace_paths(self.opts.workspace, paths)
        self._channel = self._make_channel()
        try:
            config = await self.handshake()
            record = load_sync_record(self.opts.state_dir, self.membership.node_id, config.hub_id)
            todo = []
            for rel in rels:
                known = record.files.get(rel)
                same = (
                    None
                    if force
                    else await asyncio.to_thread(
                        unchanged_since,
                        self.opts.workspace,
                        rel,
                        (known.size, known.mtime_ns, known.sha256) if known else None,
                    )
                )
                if same is None:
                    todo.append(rel)
                    continue
                record.files[rel] = SyncedFile(*same)
                report.unchanged += 1
                if on_done is not None:
                    on_done(rel)
            outcomes = await upload_many(
                self.stub,
                self.membership.node_credential,
                self.opts.workspace,
                todo,
                config,
                on_done=on_done,
            )
        except grpc.aio.AioRpcError as err:
            # One attempt only: a closed handshake counts as the mismatch it nearly always is.
            closed = closed_by_peer(err.details() or "")
            await self._end_on_tls_mismatch(err, CLOSED_BEFORE_JOIN_LIMIT if closed else 0)
            raise rpc_error(err) from None
        finally:
            await self._channel.close()
        for rel, outcome in outcomes:
            if isinstance(outcome, UploadResult):
                report.uploaded.append(outcome)
                record.files[rel] = SyncedFile(outcome.size, outcome.mtime_ns, outcome.sha256)
            else:
                report.failed.append(FailedUpload(rel, describe(outcome)))
        save_sync_record(self.opts.state_dir, record)
        return report

    # --- the stream --------------------------------------------------------------------

    async def stream(self, config: pb.NodeConfiguration) -> None:
        assert self.membership is not None
        outbox: asyncio.Queue[pb.NodeMessage] = asyncio.Queue()
        call = self.stub.TaskStream(
            metadata=[("authorization", f"Bearer {self.membership.node_credential}")]
        )
        interval = max(config.heartbeat_interval_ms, 50) / 1000
        self._grace_s = (config.lost_node_grace_ms / 1000) or 2 * interval
        self._resend_after_s = max(3 * interval, 1.0)
        # Results not yet acknowledged go first, so the hub has them before the first
        # heartbeat tells it which tasks this node still holds.
        for update in self.results.all():
            outbox.put_nowait(pb.NodeMessage(task_update=update))
        writer = asyncio.create_task(self._write(call, outbox))
        beats = asyncio.create_task(self._heartbeats(outbox, interval))
        stopper = asyncio.create_task(self._close_on_stop(call, outbox))
        helpers = [writer, beats, stopper]
        if self.syncer is not None:
            credential = self.membership.node_credential
            helpers.append(asyncio.create_task(self.syncer.run(self.stub, credential, config)))
        self._outbox = outbox
        try:
            async for message in call:
                self._handle(message, outbox)
            log.info("hub closed the stream")
        except asyncio.CancelledError:
            if not self.stopping.is_set():
                raise
            log.info("stopping: closed the stream to the hub")  # our own call.cancel()
        finally:
            self._outbox = None
            self.connected.clear()
            for task in helpers:
                task.cancel()
            if self.runner.running and not self.stopping.is_set():
                # The hub waits the same grace for this node to come back with them.
                log.warning(
                    "stream ended with %d task(s) running; they go on for %gs for a hub to "
                    "come back",
                    self.runner.running,
                    self._grace_s,
                )
                self._arm_orphan_timer()

    def _arm_orphan_timer(self) -> None:
        if self._orphan_timer is None or self._orphan_timer.done():
            self._orphan_timer = asyncio.create_task(self._stop_orphans(self._grace_s))

    async def _stop_orphans(self, grace_s: float) -> None:
        await asyncio.sleep(grace_s)
        if self.connected.is_set():
            return
        stopped = self.runner.cancel_all(
            f"no hub came back within the {grace_s:g}s lost-node grace after the stream ended"
        )
        if stopped:
            log.warning("stopped %d task(s): no hub within the %gs grace", stopped, grace_s)

    async def _close_on_stop(self, call: Any, outbox: asyncio.Queue[pb.NodeMessage]) -> None:
        await self.stopping.wait()
        # Stop the tasks first and give their results a moment to reach the hub and be
        # acknowledged; what is not acknowledged stays on disk for the next run.
        await self._stop_tasks()
        deadline = time.monotonic() + 2.0
        while (outbox.qsize() or len(self.results)) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        call.cancel()

    async def _write(self, call: Any, outbox: asyncio.Queue[pb.NodeMessage]) -> None:
        try:
            while True:
                await call.write(await outbox.get())
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            return  # the call ended; the reader sees why and reconnects

    def _held_task_ids(self) -> list[str]:
        return list(dict.fromkeys([*self.runner.running_ids, *self.results.task_ids]))

    async def _heartbeats(self, outbox: asyncio.Queue[pb.NodeMessage], interval: float) -> None:
        seq = 0
        while True:
            seq += 1
            outbox.put_nowait(
                pb.NodeMessage(
                    heartbeat=pb.Heartbeat(
                        seq=seq,
                        sent_unix_ms=clock.unix_ms(),
                        running_tasks=self.runner.running,
                        # Running, or finished with the result not yet acknowledged: the
                        # tasks this node still holds, which the hub must not fail.
                        running_task_ids=self._held_task_ids(),
                    )
                )
            )
            for update in self.results.due(self._resend_after_s):
                outbox.put_nowait(pb.NodeMessage(task_update=update))
            await asyncio.sleep(interval)

    def _warn_of_unbound_limits(self) -> None:
        """Once, for an agent that runs tasks (not a one-off `agent sync`)."""
        why = root_process_limit_warning(self.policy.limits, os.geteuid())
        if why and not self._root_warned:
            self._root_warned = True
            log.warning("%s", why)

    def _send(self, message: pb.NodeMessage) -> bool:
        if self._outbox is None:
            return False
        self._outbox.put_nowait(message)
        return True

    def _handle(self, message: pb.HubMessage, outbox: asyncio.Queue[pb.NodeMessage]) -> None:
        kind = message.WhichOneof("body")
        if kind == "policy":
            self.policy = policy_from_pb(message.policy)
            self._warn_of_unbound_limits()
            outbox.put_nowait(
                pb.NodeMessage(policy_ack=pb.PolicyAck(revision=message.policy.revision))
            )
            if not self.connected.is_set():
                self.connected.set()
                if self._orphan_timer is not None:
                    self._orphan_timer.cancel()
                    self._orphan_timer = None
                log.info(
                    "connected to hub %s; sandbox %s (revision %d)",
                    self.hubs.current,
                    self.policy.mode,
                    self.policy.revision,
                )
            else:
                log.info(
                    "sandbox policy now %s (revision %d)", self.policy.mode, self.policy.revision
                )
        elif kind == "assign":
            if message.assign.task_id in self.results or message.assign.task_id in set(
                self.runner.running_ids
            ):
                return  # already run or running here: never twice
            task = asyncio.create_task(self._run_task(message.assign))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif kind == "task_update_ack":
            ack = message.task_update_ack
            if self.results.acknowledged(ack.task_id) and not ack.accepted:
                log.warning("hub did not accept the result of task %s: %s", ack.task_id, ack.reason)
        elif kind == "cancel" and self.runner.cancel(message.cancel.task_id, message.cancel.reason):
            log.info("cancelling task %s: %s", message.cancel.task_id, message.cancel.reason)

    async def _run_task(self, assign: pb.TaskAssignment) -> None:
        spec = TaskSpec(
            task_id=assign.task_id,
            argv=tuple(assign.argv),
            script=assign.script,
            timeout_s=assign.timeout_s,
            env=dict(assign.env),
            cwd=assign.cwd,
        )
        self._send(
            pb.NodeMessage(task_update=pb.TaskUpdate(task_id=spec.task_id, state=pb.RUNNING))
        )
        live = OutputSender(spec.task_id, self._send) if self.live_output else None
        outcome = await self.runner.run(spec, self.policy, live)
        if live is not None:
            live.flush()  # before the result, which carries all of it anyway
        log.info(
            "task %s %s%s",
            spec.task_id,
            outcome.state,
            f": {outcome.error}" if outcome.error else "",
        )
        update = outcome_to_pb(spec.task_id, outcome, self.max_message_bytes)
        self.results.keep(update)  # on disk before it is sent: kept until acknowledged
        if self._send(pb.NodeMessage(task_update=update)):
            self.results.mark_sent(spec.task_id)


def outcome_to_pb(
    task_id: str, outcome: TaskOutcome, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> pb.TaskUpdate:
    """The terminal TaskUpdate, its output bounded so the message fits the hub's limit."""
    fitted = fit_output(task_id, outcome.stdout, outcome.stderr, outcome.error, max_message_bytes)
    return pb.TaskUpdate(
        task_id=task_id,
        state=STATE_TO_PB[outcome.state],
        exit_code=outcome.exit_code,
        stdout=fitted.stdout,
        stderr=fitted.stderr,
        output_truncated=outcome.output_truncated or fitted.truncated,
        error=fitted.error,
    )


def membership_to_use(opts: AgentOptions, stored: Membership | None) -> Membership | None:
    """The stored credential to rejoin with, or None to join with the invite token.

    Never silently ignores --token, --name or --label because a credential is stored:
    it refuses (or, for the environment's token, warns) and says what to do instead.
    """
    where = opts.state_dir
    if opts.rejoin:
        if not opts.token:
            raise InvalidArgument(
                "--rejoin joins afresh and needs an invite: give --token-file FILE "
                "(or set CORTEX_INVITE_TOKEN)"
            )
        if stored is not None:
            log.warning(
                "--rejoin: discarding the credential of node %s kept in %s; joining "
                "afresh with the invite",
                stored.label,
                where,
            )
        return None
    if stored is None:
        if not opts.token:
            raise Unauthenticated(
                f"no credential in {where}: join first with --token-file FILE (or "
                "CORTEX_INVITE_TOKEN) holding a token from `cortexctl invites create`"
            )
        return None
    holds = (
        f"state dir {where} already holds the credential of node {stored.label} (hub {stored.hub})"
    )
    advice = (
        "to start a second node, give it its own --state-dir; to replace this "
        "credential (a revoked or unwanted node), add --rejoin"
    )
    if opts.token and opts.token_source != "env":
        raise InvalidArgument(f"{holds}; an invite token is only for a first join: {advice}")
    if opts.token:
        log.warning("%s: CORTEX_INVITE_TOKEN is not used; %s", holds, advice)
    if opts.name and opts.name != stored.node_name:
        if stored.node_name:
            raise InvalidArgument(
                f"{holds}, whose name is decided by the hub; --name {opts.name} "
                f"would be ignored: {advice} (or ask the operator to rename it)"
            )
        log.warning("%s: --name is used only on a first join; %s", holds, advice)
    if opts.labels:
        log.info(
            "sending labels %s as node %s's self-reported labels",
            ",".join(f"{k}={v}" for k, v in opts.labels.items()),
            stored.label,
        )
    return stored
