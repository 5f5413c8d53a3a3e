"""`cortexctl serve`: start-up, the gRPC server and its background parts, signals and
graceful shutdown. The maintenance jobs are in `hub/jobs.py`, the TLS files in `hub/tls.py`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cortexctl.addresses import check_transport, split_address
from cortexctl.config import Settings
from cortexctl.core import hubs, journal, recovery
from cortexctl.core.permissions import hub_modes, secure_data_dir
from cortexctl.errors import CortexError, Unavailable
from cortexctl.hub import admin, convert, jobs, wakeup
from cortexctl.hub.atomic import write_atomic
from cortexctl.hub.auth import CredentialCache
from cortexctl.hub.ballast import Ballast
from cortexctl.hub.connections import ConnectionStats, connection_cap, fd_limit, raise_fd_limit
from cortexctl.hub.executor import StoreExecutor
from cortexctl.hub.fencing import Fence
from cortexctl.hub.identity import hub_identity
from cortexctl.hub.interceptors import ErrorMappingInterceptor
from cortexctl.hub.reconciler import Reconciler
from cortexctl.hub.runtime import HubOptions, HubRuntime
from cortexctl.hub.scheduler import Job, Scheduler
from cortexctl.hub.servicer import AgentOrchestrator
from cortexctl.hub.status_file import status_file_job
from cortexctl.hub.streams import StreamRegistry
from cortexctl.hub.sync_files import SyncFileHandler
from cortexctl.hub.tls import TlsFiles
from cortexctl.proto import mesh_pb2, mesh_pb2_grpc
from cortexctl.store.engine import Store, hold_single_hub_lock, sqlite_path
from cortexctl.store.listen import StreamMoved
from cortexctl.tuning import tune_malloc

log = logging.getLogger("cortexctl.hub")
SERVICE_NAME = mesh_pb2.DESCRIPTOR.services_by_name["AgentOrchestrator"].full_name
SHUTDOWN_GRACE_S = 5.0
# How long a stopping hub retries failing the tasks it still holds (a store that fails):
# past it the hub stops anyway and its next start fails them after the grace.
DRAIN_FAIL_RETRY_S = 15.0
_SINGLE_HUB_LOCKS: list[int | None] = []  # held open for the life of the process


@dataclass
class ServeOptions:
    listen: str
    ready_file: Path | None = None
    status_file: Path | None = None
    status_interval_s: float = 5.0
    tls: TlsFiles | None = None
    metrics_listen: str = ""
    insecure: bool = False
    extra_jobs: list[Callable[[HubRuntime], Job]] = field(default_factory=list)
    # `serve --processes N`: N hub processes share the port (SO_REUSEPORT); the parent
    # supervises them. ``instance`` is set in each child: its hub id, status file and
    # metrics port are its own.
    processes: int = 1
    instance: int | None = None


def prepare(
    settings: Settings,
    listen: str,
    insecure: bool,
    tls: bool = False,
    instance: int | None = None,
) -> tuple[Store, str, int]:
    """Blocking start-up work, done before the event loop serves anything; returns the
    store, this hub's id and the epoch it joined at."""
    if check_transport(listen, insecure=insecure, tls=tls):
        log.warning(
            "serving PLAINTEXT on non-loopback %s (--insecure): invite tokens, node "
            "credentials, tasks and uploads cross the network unencrypted; use "
            "--tls-cert/--tls-key unless this network is trusted",
            listen,
        )
    # SQLite takes one hub: refuse a second one before touching anything.
    _SINGLE_HUB_LOCKS.append(hold_single_hub_lock(settings.database_url))
    modes = hub_modes(settings.store.group)
    secure_data_dir(settings.data_dir, modes)
    store = Store(
        settings.database_url,
        pool_size=settings.store.workers + 4,
        modes=modes,
        idle_in_transaction_s=hubs.idle_in_transaction_limit(
            settings.store.idle_in_transaction_timeout, settings.hub.lease
        ),
    )
    hub_id = hub_identity(settings.data_dir, instance, modes)
    start = recovery.start_hub(
        store,
        hub_id,
        address=listen,
        lease_s=settings.hub.lease,
        mirrors_dir=settings.mirrors_dir,
    )
    if start.schema_upgraded:
        log.info(
            "store schema upgraded from %s to %s",
            start.schema_before or "empty",
            start.schema_after,
        )
    if start.stale_uploads:
        log.warning(
            "removed %d upload lease(s) left by this hub's previous run", len(start.stale_uploads)
        )
    log.info("hub %s joined the store as a member (epoch %d)", hub_id, start.epoch)
    for dead, count in start.recovered.items():
        log.warning("recovered dead hub %s: failed %d task(s)", dead, count)
    return store, hub_id, start.epoch


class HubServer:
    """One hub: the gRPC server, its servicers, the reconciler and the maintenance jobs.

    ``start()`` and ``stop()`` make it usable in-process (tests) as well as from `serve`.
    """

    def __init__(
        self, settings: Settings, store: Store, hub_id: str, opts: ServeOptions, epoch: int = 0
    ) -> None:
        self.settings = settings
        self.store = store
        self.opts = opts
        options = HubOptions.from_settings(settings, hub_id)
        self.executor = StoreExecutor(store, workers=settings.store.workers)
        self.runtime = HubRuntime(
            options=options,
            executor=self.executor,
            streams=StreamRegistry(hub_id, options.heartbeat_interval_s),
            credentials=CredentialCache(self.executor, options.handshake_deadline_s),
            epoch=epoch,
        )
        store_file = sqlite_path(store.url)
        if store_file is not None and options.disk_ballast_bytes > 0:
            ballast = Ballast.beside(
                store_file, options.disk_ballast_bytes, options.free_space_reserve
            )
            self.runtime.ballast = ballast
            self.executor.full_observers.append(ballast.release)
        self.fence = Fence(self.runtime, self._set_serving, lambda: self.address)
        self.runtime.on_fenced = self.fence.trigger
        self.executor.fence_observers.append(self.fence.trigger)
        self.servicer = AgentOrchestrator(self.runtime, sync_files=SyncFileHandler(self.runtime))
        self.health = health.aio.HealthServicer()
        limit = fd_limit()
        cap = connection_cap(limit, settings.store.workers + 4, options.max_connections)
        self.connections = ConnectionStats(fd_limit=limit, cap=cap)
        self.scheduler: Scheduler | None = None
        self.address = ""
        self._server: grpc.aio.Server | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self._wakeup: wakeup.WakeUp | None = None
        self._loop_monitor: asyncio.Task[None] | None = None
        self._metrics: Any = None
        self.admin_auth = admin.AdminAuthInterceptor(self.runtime)
        self.fatal: str | None = None  # why the hub stopped on its own
        self.stopping = asyncio.Event()

    @property
    def hub_id(self) -> str:
        return self.runtime.hub_id

    def _grpc_server(self) -> grpc.aio.Server:
        opts = self.runtime.options
        server = grpc.aio.server(
            interceptors=[ErrorMappingInterceptor(), self.admin_auth],
            options=[
                # Connections within what the open-file limit leaves; past the cap the C
                # core closes a new connection at once. Those that never finish their
                # handshake, or sit without a call, are closed after a grace period.
                ("grpc.max_allowed_incoming_connections", self.connections.cap),
                ("grpc.server_handshake_timeout_ms", int(opts.handshake_timeout_s * 1000)),
                ("grpc.max_connection_idle_ms", int(opts.idle_timeout_s * 1000)),
                # Off, so a second hub on a taken port fails at once; on for the processes
                # of `serve --processes N`, which share one port.
                ("grpc.so_reuseport", 1 if self.opts.processes > 1 else 0),
                (
                    "grpc.max_receive_message_length",
                    self.runtime.options.transport_message_bytes,
                ),
                ("grpc.max_send_message_length", 8 * 1024 * 1024),
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
                # Reconnect storms: let thousands of nodes queue instead of being refused.
                ("grpc.server.max_pending_requests", 20_000),
                ("grpc.server.max_pending_requests_hard_limit", 40_000),
            ],
        )
        mesh_pb2_grpc.add_AgentOrchestratorServicer_to_server(  # type: ignore[no-untyped-call]
            self.servicer, server
        )
        admin.add_admin_service(self.runtime, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, admin.SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
            server,
        )
        return server

    async def start(self) -> str:
        """Listen, serve, start the background parts; return the bound address."""
        opts, runtime = self.opts, self.runtime
        server = self._server = self._grpc_server()
        try:
            if opts.tls is not None:
                port = server.add_secure_port(opts.listen, opts.tls.server_credentials())
            else:
                port = server.add_insecure_port(opts.listen)
        except RuntimeError:
            raise Unavailable(
                f"cannot listen on {opts.listen}: the address is in use or not "
                "available here; pick another with --listen"
            ) from None
        host, _ = split_address(opts.listen)
        self.address = f"{host}:{port}"
        self._loop_monitor = asyncio.create_task(runtime.loop_monitor.run(), name="loop-monitor")
        if not runtime.epoch:  # started in-process, without `prepare`: join now
            runtime.epoch = await self.executor.session(
                hubs.register_hub,
                self.hub_id,
                self.address,
                runtime.options.lease_s,
                write=True,
                timeout=10.0,
            )
        await self._watch_previous_run()
        if runtime.ballast is not None:
            await jobs.put_ballast(runtime, runtime.ballast)
        await server.start()
        await self.executor.session(
            hubs.set_address, self.hub_id, self.address, write=True, timeout=10.0
        )
        await self._set_serving(True)
        scheduled = jobs.core_jobs(runtime) + [make(runtime) for make in opts.extra_jobs]
        scheduled.append(jobs.connection_watch_job(runtime, self.connections))
        if runtime.ballast is not None:
            scheduled.append(jobs.ballast_job(runtime, runtime.ballast))
        identity = jobs.sqlite_identity(self.store)
        if identity is not None:
            scheduled.append(jobs.store_file_job(runtime, identity, self.fail))
        if opts.status_file is not None:
            scheduled.append(
                status_file_job(runtime, opts.status_file, opts.status_interval_s, self.address)
            )
        self.scheduler = Scheduler(scheduled, recorder=jobs.job_recorder(runtime))
        self.scheduler.start()
        if opts.metrics_listen:
            await self._start_metrics()
        self._wakeup = wakeup.start(
            self.store.url,
            runtime.wake_reconciler,
            on_stream_moved=self._stream_moved,
            on_tasks=runtime.task_watches.changed,
        )
        self._reconciler = asyncio.create_task(Reconciler(runtime).run(), name="reconciler")
        log.info(
            "hub %s serving on %s (store %s; at most %d connections, open-file limit %d)",
            self.hub_id,
            self.address,
            self.store.display_url,
            self.connections.cap,
            self.connections.fd_limit,
        )
        return self.address

    async def _set_serving(self, serving: bool) -> None:
        """gRPC health of the hub (and of its service): NOT_SERVING while fenced."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    def _stream_moved(self, moved: StreamMoved) -> None:
        """NOTIFY: a node's stream opened on another hub while this one held one."""
        if moved.from_hub_id != self.hub_id:
            return
        stream = self.runtime.streams.superseded(moved.node_id, moved.gen, moved.hub_id)
        if stream is not None:
            log.info(
                "%s reconnected through hub %s (stream generation %d): closing the older "
                "stream here",
                stream.label,
                moved.hub_id,
                moved.gen,
            )

    async def _watch_previous_run(self) -> None:
        """Give the tasks this hub's previous run left in flight the lost-node grace."""
        runtime = self.runtime
        streams = await self.executor.session(journal.in_flight_streams, self.hub_id, timeout=30.0)
        if not streams:
            return
        grace = runtime.options.lost_node_grace_s
        reason = (
            f"hub {self.hub_id} restarted while the task was in flight and its node did not "
            f"come back within the {grace:g}s grace"
        )
        log.info(
            "this hub's previous run left tasks in flight on %d stream(s); their nodes have "
            "%gs to come back",
            len(streams),
            grace,
        )
        runtime.spawn(
            runtime.after_grace(
                grace,
                lambda session: journal.fail_stream_tasks(
                    session, streams, reason, member=runtime.member, previous_run=True
                ),
                "the tasks this hub's previous run left in flight",
            ),
            "restart-grace",
        )

    def fail(self, message: str) -> None:
        """Stop serving because of a condition the hub cannot recover from by itself."""
        if self.fatal is None:
            self.fatal = message
            log.error("%s", message)
            self.stopping.set()

    async def _start_metrics(self) -> None:
        from cortexctl.hub.metrics import HubCollector, start_metrics_server

        listen = self.opts.metrics_listen
        split_address(listen)
        assert self.scheduler is not None
        try:
            self._metrics = await self.executor.run(
                start_metrics_server,
                listen,
                HubCollector(
                    self.runtime,
                    self.scheduler,
                    self.servicer,
                    self.connections,
                    self.admin_auth.stats,
                ),
                what="the metrics listener",
            )
        except OSError as err:
            raise Unavailable(
                f"cannot serve metrics on {listen}: {err.strerror}; pick another --metrics-listen"
            ) from None
        log.info("metrics on http://%s/metrics", listen)

    async def stop(self) -> None:
        """Drain: NOT_SERVING, let running tasks finish (drain timeout), fail the rest."""
        runtime = self.runtime
        drain_s = 0.0 if self.fatal else runtime.options.drain_timeout_s
        log.info(
            "shutting down: no new work; running tasks have %gs to finish (drain timeout)",
            drain_s,
        )
        runtime.draining = True
        await self.fence.wait()
        runtime.cancel_graces()
        await self.health.enter_graceful_shutdown()
        await self._drain(drain_s)
        for stream in runtime.streams.streams():
            stream.close("the hub is shutting down; reconnect shortly", Unavailable)
        if self._server is not None:
            await self._server.stop(SHUTDOWN_GRACE_S)
        if self._reconciler is not None:
            self._reconciler.cancel()
            await asyncio.wait([self._reconciler], timeout=SHUTDOWN_GRACE_S)
        if self._wakeup is not None:
            await asyncio.to_thread(self._wakeup.stop)
        if self.scheduler is not None:
            await self.scheduler.stop()
        await runtime.drain_background(timeout=15.0)
        if self._loop_monitor is not None:
            self._loop_monitor.cancel()
        if self.scheduler is not None:
            await self.scheduler.run_once("presence_flush")
        with contextlib.suppress(CortexError):
            await self.executor.session(hubs.stop_hub, self.hub_id, write=True, timeout=10.0)
        if self._metrics is not None:
            await self.executor.run(self._metrics.shutdown, what="the metrics listener")
        log.info("hub %s stopped", self.hub_id)

    async def _drain(self, drain_s: float) -> None:
        """Wait up to ``drain_s`` for in-flight tasks to end, then fail and cancel the rest.

        Pending tasks never left the hub: they stay pending for the next hub to send.
        """
        runtime = self.runtime
        deadline = asyncio.get_running_loop().time() + drain_s
        while any(s.in_flight for s in runtime.streams.streams()):
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.1)
        reason = (
            f"hub {self.hub_id} was shutting down and the task did not finish within the "
            f"{drain_s:g}s drain timeout"
        )
        if self.fatal:
            reason = f"hub {self.hub_id} stopped: {self.fatal}"
        if not self.fatal:  # a vanished store is not to be written to any more
            # FAILED in the journal first, then the cancels: a node's answer to the cancel
            # must not end the task CANCELLED before the journal says why it ended.
            await runtime.fail_with_retries(
                lambda session: journal.fail_own_tasks(session, runtime.member, reason),
                "the tasks still in flight",
                "at shutdown",
                give_up_after_s=DRAIN_FAIL_RETRY_S,
            )
        for stream in runtime.streams.streams():
            for task_id in sorted(stream.in_flight):
                stream.send(convert.cancel(task_id, reason))


async def run_hub(hub: HubServer, early: list[int] | None = None) -> None:
    """Serve until SIGTERM or SIGINT (or a fatal condition), then drain.

    ``early`` holds the SIGTERMs that arrived while the hub was starting: it stops as soon
    as it can, through the same drain, so a hub stopped during start-up leaves the store
    as a clean stop does (its membership ended, not left live until its lease lapses).
    """
    address = await hub.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, hub.stopping.set)
    if early:
        log.info("stopping: signal %d arrived while the hub was starting", early[0])
        hub.stopping.set()
    if hub.opts.ready_file is not None:
        document = {"address": address, "hub_id": hub.hub_id, "pid": os.getpid()}
        await hub.executor.run(write_atomic, hub.opts.ready_file, json.dumps(document) + "\n")
    await hub.stopping.wait()
    await hub.stop()
    if hub.fatal:
        raise Unavailable(hub.fatal)


def serve(settings: Settings, opts: ServeOptions) -> None:
    raise_fd_limit()  # before anything opens a file: the cap is sized from the result
    # A SIGTERM (a supervisor's stop) before the loop's handlers: stop once started.
    # Ctrl-C keeps interrupting at once: an operator may be waiting on a slow store.
    early: list[int] = []
    signal.signal(signal.SIGTERM, lambda number, _frame: early.append(number))
    store, hub_id, epoch = prepare(
        settings, opts.listen, opts.insecure, tls=opts.tls is not None, instance=opts.instance
    )
    hub = HubServer(settings, store, hub_id, opts, epoch)
    tune_malloc(hub.runtime.options.max_chunk_bytes)
    try:
        asyncio.run(run_hub(hub, early))
    finally:
        hub.executor.shutdown()
        store.dispose()
