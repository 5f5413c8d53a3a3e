"""`cortexctl serve`: bootstrap, the gRPC server, background parts, graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cortexctl.addresses import is_loopback, split_address
from cortexctl.config import Settings
from cortexctl.core import hubs, presence, recovery
from cortexctl.core import status as core_status
from cortexctl.core.mirrors import tune_malloc
from cortexctl.core.views import to_jsonable
from cortexctl.errors import Unavailable, UsageError
from cortexctl.hub.auth import CredentialCache
from cortexctl.hub.executor import StoreExecutor
from cortexctl.hub.interceptors import ErrorMappingInterceptor
from cortexctl.hub.reconciler import Reconciler
from cortexctl.hub.runtime import HubOptions, HubRuntime
from cortexctl.hub.scheduler import Job, JobStatus, Scheduler
from cortexctl.hub.servicer import AgentOrchestrator
from cortexctl.hub.streams import StreamRegistry
from cortexctl.hub.sync_files import SyncFileHandler
from cortexctl.proto import mesh_pb2, mesh_pb2_grpc
from cortexctl.store.engine import Store, upgrade

log = logging.getLogger("cortexctl.hub")
SERVICE_NAME = mesh_pb2.DESCRIPTOR.services_by_name["AgentOrchestrator"].full_name
SHUTDOWN_GRACE_S = 5.0


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None

    @classmethod
    def from_options(
        cls, cert: Path | None, key: Path | None, client_ca: Path | None
    ) -> TlsFiles | None:
        if cert is None and key is None:
            if client_ca is not None:
                raise UsageError("--tls-client-ca needs --tls-cert and --tls-key")
            return None
        if cert is None or key is None:
            raise UsageError("TLS needs both --tls-cert and --tls-key")
        return cls(cert, key, client_ca)

    def server_credentials(self) -> grpc.ServerCredentials:
        def read(path: Path) -> bytes:
            try:
                return path.read_bytes()
            except OSError as err:
                raise UsageError(f"cannot read {path}: {err.strerror}") from None

        return grpc.ssl_server_credentials(
            [(read(self.key), read(self.cert))],
            root_certificates=read(self.client_ca) if self.client_ca else None,
            require_client_auth=self.client_ca is not None,
        )


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


def hub_identity(data_dir: Path) -> str:
    """This hub's id, kept in its data dir so a restart knows the tasks it left behind."""
    path = data_dir / "hub_id"
    try:
        existing = path.read_text().strip()
        if existing:
            return existing
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    hub_id = f"hub_{secrets.token_hex(6)}"
    write_atomic(path, hub_id + "\n")
    return hub_id


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def prepare(
    settings: Settings, listen: str, insecure: bool, tls: bool = False
) -> tuple[Store, str]:
    """Blocking start-up work, done before the event loop serves anything."""
    host, _ = split_address(listen)
    if not is_loopback(host) and not insecure and not tls:
        raise UsageError(
            f"refusing to listen on non-loopback {listen} without TLS; pass "
            "--tls-cert/--tls-key, or --insecure if a trusted network is meant"
        )
    store = Store(settings.database_url, pool_size=settings["store.workers"] + 4)
    before, after = upgrade(store)
    if before != after:
        log.info("store schema upgraded from %s to %s", before or "empty", after)
    hub_id = hub_identity(settings.data_dir)
    # Uploads of this hub's previous run died with it: free their leases and temp files.
    from cortexctl.core.maintenance import run_gc_locks

    stale = run_gc_locks(store, ttl_s=0, mirrors_dir=settings.mirrors_dir, hub_id=hub_id)
    if stale["expired"]:
        log.warning(
            "removed %d upload lease(s) left by this hub's previous run", len(stale["expired"])
        )
    with store.session(write=True) as session:
        failed = recovery.recover_hub(session, hub_id, "hub restarted before the task finished")
        swept = recovery.sweep_dead_hubs(session, me=hub_id)
        hubs.register_hub(session, hub_id, listen)
    if failed:
        log.warning("failed %d task(s) left in flight by this hub's previous run", failed)
    for dead, count in swept.items():
        log.warning("recovered dead hub %s: failed %d task(s)", dead, count)
    return store, hub_id


def core_jobs(rt: HubRuntime) -> list[Job]:
    executor = rt.executor

    async def flush_presence() -> dict[str, Any]:
        batch = rt.streams.take_presence()
        if not batch:
            return {}
        try:
            await executor.session(presence.flush_presence, batch, write=True, timeout=10.0)
        except BaseException:
            rt.streams.restore_presence(batch)
            raise
        return {}

    async def renew_lease() -> dict[str, Any]:
        await executor.session(hubs.renew_hub, rt.hub_id, write=True, timeout=10.0)
        return {}

    async def sweep_dead_hubs() -> dict[str, Any]:
        swept = await executor.session(
            recovery.sweep_dead_hubs, write=True, timeout=30.0, me=rt.hub_id
        )
        return {"hubs_recovered": len(swept), "tasks_failed": sum(swept.values())}

    async def sweep_credentials() -> dict[str, Any]:
        return {"expired": rt.credentials.sweep(), "peers_forgotten": rt.auth_failures.sweep()}

    return [
        Job("presence_flush", rt.options.presence_flush_s, flush_presence),
        Job("hub_lease", hubs.HUB_LEASE_S / 3, renew_lease),
        Job("dead_hub_sweep", 30.0, sweep_dead_hubs),
        Job("credential_cache_sweep", 60.0, sweep_credentials),
        *sync_jobs(rt),
        *retention_jobs(rt),
    ]


def retention_jobs(rt: HubRuntime) -> list[Job]:
    """Spent invites and old journal rows: the same runs as `gc invites` and `gc tasks`."""
    from functools import partial

    from cortexctl.core import maintenance

    opts, executor = rt.options, rt.executor

    async def gc_invites() -> dict[str, Any]:
        run = partial(
            maintenance.run_gc_invites, executor.store, retention_s=opts.invite_retention_s
        )
        result = await executor.run(run, timeout=600.0, what="the invite GC")
        return {"removed": result["count"], "skipped": result["skipped"]}

    async def gc_tasks() -> dict[str, Any]:
        run = partial(
            maintenance.run_gc_tasks, executor.store, older_than_s=opts.journal_retention_s
        )
        result = await executor.run(run, timeout=600.0, what="the journal GC")
        return {"removed": result["count"], "skipped": result["skipped"]}

    return [
        Job("invite_gc", opts.invite_gc_interval_s, gc_invites, run_at_start=True),
        Job("journal_gc", opts.journal_gc_interval_s, gc_tasks, run_at_start=True),
    ]


def sync_jobs(rt: HubRuntime) -> list[Job]:
    """Upload leases renewed while held; lock GC and mirror GC, the same runs as `gc ...`."""
    from functools import partial

    from cortexctl.core import locks, maintenance

    opts, executor = rt.options, rt.executor

    async def renew_sync_leases() -> dict[str, Any]:
        renewals = [
            locks.Renewal(held.node_id, held.path, held.sync_id, held.bytes_received)
            for held in rt.sync_locks.holders()
            if held.leased
        ]
        if renewals:
            await executor.session(locks.renew_leases, renewals, write=True, timeout=10.0)
        return {}

    async def gc_locks() -> dict[str, Any]:
        for held in rt.sync_locks.stale(opts.lock_ttl_s):
            log.warning("upload of %s/%s has held its lock for long", held.node_id, held.path)
        run = partial(
            maintenance.run_gc_locks,
            executor.store,
            ttl_s=opts.lock_ttl_s,
            mirrors_dir=opts.mirrors_dir,
            held=rt.sync_locks.held(),
            hub_id=rt.hub_id,
        )
        result = await executor.run(run, timeout=600.0, what="the lock GC")
        return {"expired": len(result["expired"]), "removed_files": len(result["removed_files"])}

    async def gc_mirrors() -> dict[str, Any]:
        run = partial(
            maintenance.run_gc_mirrors,
            executor.store,
            mirrors_dir=opts.mirrors_dir,
            retention_s=opts.mirror_retention_s,
            held_temp_paths=frozenset(held.temp_path for held in rt.sync_locks.holders()),
        )
        result = await executor.run(run, timeout=3600.0, what="the mirror GC")
        return {key: result[key] for key in ("removed_files", "removed_bytes")}

    return [
        Job("sync_lease_renew", locks.LEASE_RENEW_S, renew_sync_leases),
        Job("lock_gc", opts.lock_gc_interval_s, gc_locks),
        Job("mirror_gc", opts.mirror_gc_interval_s, gc_mirrors),
    ]


def job_recorder(rt: HubRuntime) -> Callable[[JobStatus], Awaitable[None]]:
    """Write each job run to the store, for `cortexctl mesh status --jobs`."""

    async def record(status: JobStatus) -> None:
        view = core_status.JobStatusView(
            hub_id=rt.hub_id,
            job=status.name,
            interval_s=status.interval_s,
            last_started_at=status.last_started_at,
            last_duration_s=status.last_duration_s,
            last_outcome=status.last_outcome,
            last_error=status.last_error,
            last_result=status.last_result,
            next_run_at=status.next_run_at,
            runs=status.runs,
            failures=status.failures,
        )
        await rt.executor.session(
            core_status.record_job_run, rt.hub_id, view, write=True, timeout=10.0
        )

    return record


def status_file_job(rt: HubRuntime, path: Path, interval_s: float, address: str) -> Job:
    """A JSON snapshot of the mesh, written atomically off the event loop."""

    def write() -> dict[str, Any]:
        with rt.executor.store.session() as session:
            snap = core_status.snapshot(session, rt.options.sandbox, with_jobs=True)
        document = {
            "hub": {
                "id": rt.hub_id,
                "address": address,
                "pid": os.getpid(),
                "connected_nodes": len(rt.streams),
            },
            **to_jsonable(snap),
        }
        write_atomic(path, json.dumps(document, indent=2) + "\n")
        return {}

    async def run() -> dict[str, Any]:
        return await rt.executor.run(write, timeout=30.0, what="the status file")

    return Job("status_file", interval_s, run, run_at_start=True)


class HubServer:
    """One hub: the gRPC server, its servicers, the reconciler and the maintenance jobs.

    ``start()`` and ``stop()`` make it usable in-process (tests) as well as from `serve`.
    """

    def __init__(self, settings: Settings, store: Store, hub_id: str, opts: ServeOptions) -> None:
        self.settings = settings
        self.store = store
        self.opts = opts
        options = HubOptions.from_settings(settings, hub_id)
        self.executor = StoreExecutor(store, workers=settings["store.workers"])
        self.runtime = HubRuntime(
            options=options,
            executor=self.executor,
            streams=StreamRegistry(hub_id, options.heartbeat_interval_s),
            credentials=CredentialCache(self.executor, options.handshake_deadline_s),
        )
        self.servicer = AgentOrchestrator(self.runtime, sync_files=SyncFileHandler(self.runtime))
        self.health = health.aio.HealthServicer()
        self.scheduler: Scheduler | None = None
        self.address = ""
        self._server: grpc.aio.Server | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self._metrics: Any = None

    @property
    def hub_id(self) -> str:
        return self.runtime.hub_id

    def _grpc_server(self) -> grpc.aio.Server:
        server = grpc.aio.server(
            interceptors=[ErrorMappingInterceptor()],
            options=[
                ("grpc.so_reuseport", 0),
                (
                    "grpc.max_receive_message_length",
                    self.runtime.options.max_chunk_bytes + 64 * 1024,
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
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
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
        await server.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        jobs = core_jobs(runtime) + [make(runtime) for make in opts.extra_jobs]
        if opts.status_file is not None:
            jobs.append(
                status_file_job(runtime, opts.status_file, opts.status_interval_s, self.address)
            )
        self.scheduler = Scheduler(jobs, recorder=job_recorder(runtime))
        self.scheduler.start()
        if opts.metrics_listen:
            await self._start_metrics()
        self._reconciler = asyncio.create_task(Reconciler(runtime).run(), name="reconciler")
        log.info(
            "hub %s serving on %s (store %s)", self.hub_id, self.address, self.store.display_url
        )
        return self.address

    async def _start_metrics(self) -> None:
        from cortexctl.hub.metrics import HubCollector, start_metrics_server

        listen = self.opts.metrics_listen
        split_address(listen)
        assert self.scheduler is not None
        try:
            self._metrics = await self.executor.run(
                start_metrics_server,
                listen,
                HubCollector(self.runtime, self.scheduler, self.servicer),
                what="the metrics listener",
            )
        except OSError as err:
            raise Unavailable(
                f"cannot serve metrics on {listen}: {err.strerror}; pick another --metrics-listen"
            ) from None
        log.info("metrics on http://%s/metrics", listen)

    async def stop(self) -> None:
        """Drain: NOT_SERVING, close streams, fail what was in flight, record the stop."""
        runtime = self.runtime
        log.info("shutting down: draining streams (grace %gs)", SHUTDOWN_GRACE_S)
        runtime.draining = True
        await self.health.enter_graceful_shutdown()
        for stream in runtime.streams.streams():
            stream.close("the hub is shutting down; reconnect shortly", "UNAVAILABLE")
        if self._server is not None:
            await self._server.stop(SHUTDOWN_GRACE_S)
        if self._reconciler is not None:
            self._reconciler.cancel()
            await asyncio.wait([self._reconciler], timeout=SHUTDOWN_GRACE_S)
        if self.scheduler is not None:
            await self.scheduler.stop()
        await runtime.drain_background(timeout=15.0)
        if self.scheduler is not None:
            await self.scheduler.run_once("presence_flush")
        await self.executor.session(hubs.stop_hub, self.hub_id, write=True, timeout=10.0)
        if self._metrics is not None:
            await self.executor.run(self._metrics.shutdown, what="the metrics listener")
        log.info("hub %s stopped", self.hub_id)


async def run_hub(hub: HubServer) -> None:
    """Serve until SIGTERM or SIGINT, then drain."""
    address = await hub.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if hub.opts.ready_file is not None:
        document = {"address": address, "hub_id": hub.hub_id, "pid": os.getpid()}
        await hub.executor.run(write_atomic, hub.opts.ready_file, json.dumps(document) + "\n")
    await stop.wait()
    await hub.stop()


def serve(settings: Settings, opts: ServeOptions) -> None:
    store, hub_id = prepare(settings, opts.listen, opts.insecure, tls=opts.tls is not None)
    hub = HubServer(settings, store, hub_id, opts)
    tune_malloc(hub.runtime.options.max_chunk_bytes)
    try:
        asyncio.run(run_hub(hub))
    finally:
        hub.executor.shutdown()
        store.dispose()
