"""What every part of a running hub shares: settings, the executor, live streams."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from cortexctl.config import Settings
from cortexctl.core.hubs import Member
from cortexctl.core.live_output import LiveOutput
from cortexctl.core.mirrors import local_hub_ids
from cortexctl.core.permissions import PRIVATE, HubModes, hub_modes
from cortexctl.core.quotas import QuotaDefaults, quota_defaults
from cortexctl.core.roles import parse_cert_roles
from cortexctl.core.sandbox import SandboxDefaults, sandbox_defaults
from cortexctl.errors import CortexError, Fenced
from cortexctl.hub.auth import CredentialCache
from cortexctl.hub.ballast import Ballast
from cortexctl.hub.executor import StoreExecutor
from cortexctl.hub.inflight import InFlightUploads
from cortexctl.hub.ratelimit import FailureLimiter
from cortexctl.hub.stalls import ConditionLog, LoopMonitor
from cortexctl.hub.streams import StreamRegistry
from cortexctl.hub.sync_locks import SyncLockRegistry
from cortexctl.hub.task_watch import TaskWatches

log = logging.getLogger("cortexctl.hub")
# Failing a lost node's tasks is retried until the store takes it: the first retry after
# FAIL_RETRY_FIRST_S, doubling up to FAIL_RETRY_CAP_S between tries.
FAIL_RETRY_FIRST_S = 0.5
FAIL_RETRY_CAP_S = 30.0


@dataclass(frozen=True)
class HubOptions:
    hub_id: str
    heartbeat_interval_s: float = 5.0
    lost_node_grace_s: float = 10.0
    drain_timeout_s: float = 10.0
    handshake_deadline_s: float = 2.0
    poll_interval_s: float = 0.5
    auth_failure_limit: int = 20
    max_connections: int = 0
    lease_s: float = 15.0
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    # Admin API roles of mTLS client certificates: common name -> role (hub.admin_cert_roles).
    admin_cert_roles: Mapping[str, str] = field(default_factory=dict)
    presence_flush_s: float = 1.0
    sandbox: SandboxDefaults = SandboxDefaults()
    max_chunk_bytes: int = 1024 * 1024
    max_file_bytes: int = 1024**3
    quotas: QuotaDefaults = QuotaDefaults()
    free_space_reserve: str = "5%"
    disk_ballast_bytes: int = 0  # store.disk_ballast (SQLite only; hub/ballast.py)
    lock_wait_s: float = 5.0
    lock_ttl_s: float = 600.0
    mirrors_dir: Path = Path("mirrors")
    data_dir: Path | None = None  # where the hub ids of this host's processes are kept
    mirror_retention_s: float = 30 * 86400.0
    lock_gc_interval_s: float = 60.0
    mirror_gc_interval_s: float = 3600.0
    invite_gc_interval_s: float = 3600.0
    invite_retention_s: float = 7 * 86400.0
    journal_gc_interval_s: float = 3600.0
    journal_retention_s: float = 30 * 86400.0
    task_expiry_interval_s: float = 5.0
    modes: HubModes = PRIVATE  # folders and files the hub writes (store.group)
    task_expiry_s: float = 0.0  # hub.task_expiry: 0, queued tasks never expire
    audit_retention_s: float = 365 * 86400.0
    audit_gc_interval_s: float = 3600.0

    @property
    def max_message_bytes(self) -> int:
        """The largest message the hub takes, announced in the handshake."""
        return self.max_chunk_bytes + 64 * 1024

    @property
    def transport_message_bytes(self) -> int:
        """The server's grpc.max_receive_message_length: room for the whole result of an
        agent that ignores the announced limit, so the hub itself sees such a message and
        names the node, instead of the transport dropping the stream without a word."""
        return max(self.max_message_bytes, 2 * self.sandbox.max_output_bytes + 64 * 1024)

    @classmethod
    def from_settings(cls, settings: Settings, hub_id: str) -> HubOptions:
        hub, jobs, sync = settings.hub, settings.jobs, settings.sync
        return cls(
            hub_id=hub_id,
            heartbeat_interval_s=hub.heartbeat_interval,
            lost_node_grace_s=hub.lost_node_grace or 2 * hub.heartbeat_interval,
            drain_timeout_s=hub.drain_timeout,
            handshake_deadline_s=hub.handshake_deadline,
            poll_interval_s=hub.poll_interval,
            auth_failure_limit=hub.auth_failure_limit,
            max_connections=hub.max_connections,
            lease_s=hub.lease,
            handshake_timeout_s=hub.handshake_timeout,
            idle_timeout_s=hub.idle_timeout,
            admin_cert_roles=parse_cert_roles(hub.admin_cert_roles),
            presence_flush_s=jobs.presence_flush_interval,
            sandbox=sandbox_defaults(settings),
            max_chunk_bytes=sync.max_chunk_bytes,
            max_file_bytes=sync.max_file_bytes,
            quotas=quota_defaults(settings),
            free_space_reserve=sync.free_space_reserve,
            disk_ballast_bytes=settings.store.disk_ballast,
            lock_wait_s=sync.lock_wait,
            lock_ttl_s=sync.lock_ttl,
            mirrors_dir=settings.mirrors_dir,
            data_dir=settings.data_dir,
            mirror_retention_s=sync.mirror_retention,
            lock_gc_interval_s=jobs.lock_gc_interval,
            mirror_gc_interval_s=jobs.mirror_gc_interval,
            invite_gc_interval_s=jobs.invite_gc_interval,
            invite_retention_s=jobs.invite_retention,
            journal_gc_interval_s=jobs.journal_gc_interval,
            journal_retention_s=jobs.journal_retention,
            task_expiry_interval_s=jobs.task_expiry_interval,
            modes=hub_modes(settings.store.group),
            task_expiry_s=hub.task_expiry,
            audit_retention_s=jobs.audit_retention,
            audit_gc_interval_s=jobs.audit_gc_interval,
        )


@dataclass
class HubRuntime:
    options: HubOptions
    executor: StoreExecutor
    streams: StreamRegistry
    credentials: CredentialCache
    sync_locks: SyncLockRegistry = field(default_factory=SyncLockRegistry)
    uploads: InFlightUploads = field(default_factory=InFlightUploads)
    auth_failures: FailureLimiter = field(default_factory=FailureLimiter)
    wake_reconciler: asyncio.Event = field(default_factory=asyncio.Event)
    task_watches: TaskWatches = field(default_factory=TaskWatches)  # WaitTask, WatchTask
    live_output: LiveOutput = field(default_factory=lambda: LiveOutput(0))
    loop_monitor: LoopMonitor = field(default_factory=lambda: LoopMonitor(threshold_s=1.0))
    draining: bool = False
    # Room kept for a SQLite store on a full disk (None: another backend, or none wanted).
    ballast: Ballast | None = None
    # The epoch this process holds its membership at (fencing token); 0 before it joins.
    epoch: int = 0
    # Another hub took this one over: it serves nothing until it has rejoined (hub/fencing.py).
    fenced: bool = False
    fences: int = 0  # how many times this hub fenced itself (metrics)
    # Starts the fence (set by the server to ``Fence.trigger``): another hub took over.
    on_fenced: Callable[[Fenced], None] = field(default=lambda err: None)
    _background: set[asyncio.Task[Any]] = field(default_factory=set)
    _graces: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.auth_failures.max_failures = self.options.auth_failure_limit
        self.live_output.cap = self.options.sandbox.max_output_bytes  # as for a result
        # A stall as long as a heartbeat interval could make a live node look silent.
        self.loop_monitor.threshold_s = max(0.1, self.options.heartbeat_interval_s)

    @property
    def hub_id(self) -> str:
        return self.options.hub_id

    @property
    def local_hubs(self) -> frozenset[str]:
        """The hubs whose mirrors are this host's folder: this one, and the other processes
        of `serve --processes N` (their ids are kept in the same data dir)."""
        data_dir = self.options.data_dir
        return frozenset({self.hub_id}) | (local_hub_ids(data_dir) if data_dir else frozenset())

    @property
    def member(self) -> Member:
        """This hub as its moves of tasks name it (see ``core.hubs.hold``)."""
        return Member(self.options.hub_id, self.epoch)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, kept until done, awaited on shutdown."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def drain_background(self, timeout: float) -> None:
        pending = list(self._background)
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    async def after_grace(self, grace_s: float, fail: Callable[[Session], int], what: str) -> int:
        """Wait ``grace_s`` (more after a stall of this hub), then run ``fail`` in the store.

        Cancelled by ``cancel_graces`` when the hub shuts down (its drain decides then).
        """
        task = asyncio.current_task()
        if task is not None:
            self._graces.add(task)
        try:
            deadline = time.monotonic() + grace_s
            monitor = self.loop_monitor
            while True:
                await asyncio.sleep(max(monitor.tick_s, deadline - time.monotonic()))
                if monitor.stalled_now():
                    continue
                # The hub could not answer during its own stall: a node trying to come back
                # then gets a whole grace after it.
                deadline = max(deadline, monitor.last_stall_end() + grace_s)
                if time.monotonic() >= deadline:
                    break
            return await self.fail_with_retries(fail, what, f"after the {grace_s:g}s grace")
        finally:
            if task is not None:
                self._graces.discard(task)

    async def fail_with_retries(
        self,
        fail: Callable[[Session], int],
        what: str,
        when: str,
        *,
        give_up_after_s: float | None = None,
    ) -> int:
        """Run ``fail`` in the store until it commits, so that every task ends in bounded
        time without an operator: a store that fails for a while (a full disk, a restart)
        is retried with back-off up to ``FAIL_RETRY_CAP_S`` between tries.

        It stops without failing anything when the hub is fenced (the hub that took over
        decided these tasks) or cancelled (the hub stops: its drain decides), and after
        ``give_up_after_s`` when that is given (the drain itself, which must not hold a
        stop forever; a restarted hub fails those tasks after its grace).
        """
        failures = ConditionLog(log, f"recording {what} as failed {when}")
        delay = FAIL_RETRY_FIRST_S
        started = time.monotonic()
        while True:
            if self.fenced:
                log.info("did not fail %s %s: the hub is fenced", what, when)
                return 0
            try:
                failed = await self.executor.session(fail, write=True, timeout=30.0)
            except Fenced as err:
                # Another hub took over: it decided these tasks; nothing to retry here.
                log.info("did not fail %s %s: %s", what, when, err)
                return 0
            except CortexError as err:
                if give_up_after_s is not None and (
                    time.monotonic() - started + delay > give_up_after_s
                ):
                    log.error(
                        "could not fail %s %s (%s); a restarted hub fails them after its "
                        "grace, or `cortexctl journal fail NODE` now",
                        what,
                        when,
                        err,
                    )
                    return 0
                failures.failed(f"{err}; retried every {FAIL_RETRY_CAP_S:g}s at most")
                await asyncio.sleep(delay)
                delay = min(FAIL_RETRY_CAP_S, delay * 2)
                continue
            failures.ok()
            if failed:
                log.warning("failed %d of %s %s", failed, what, when)
            return failed

    def cancel_graces(self) -> None:
        for task in list(self._graces):
            task.cancel()
