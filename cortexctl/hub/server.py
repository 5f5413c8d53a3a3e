"""`cortexctl serve`: bootstrap, the gRPC server, background parts, graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cortexctl.config import Settings
from cortexctl.core import hubs, presence, recovery
from cortexctl.errors import Unavailable, UsageError
from cortexctl.hub.auth import CredentialCache
from cortexctl.hub.executor import StoreExecutor
from cortexctl.hub.interceptors import ErrorMappingInterceptor
from cortexctl.hub.reconciler import Reconciler
from cortexctl.hub.runtime import HubOptions, HubRuntime
from cortexctl.hub.scheduler import Job, Scheduler
from cortexctl.hub.servicer import AgentOrchestrator
from cortexctl.hub.streams import StreamRegistry
from cortexctl.proto import mesh_pb2, mesh_pb2_grpc
from cortexctl.store.engine import Store, upgrade

log = logging.getLogger("cortexctl.hub")
SERVICE_NAME = mesh_pb2.DESCRIPTOR.services_by_name["AgentOrchestrator"].full_name
SHUTDOWN_GRACE_S = 5.0
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


@dataclass
class ServeOptions:
    listen: str
    ready_file: Path | None = None
    insecure: bool = False
    extra_jobs: list[Callable[[HubRuntime], Job]] = field(default_factory=list)


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"bad address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:50051")
    return host, int(port)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


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


def prepare(settings: Settings, listen: str, insecure: bool) -> tuple[Store, str]:
    """Blocking start-up work, done before the event loop serves anything."""
    host, _ = split_address(listen)
    if not is_loopback(host) and not insecure:
        raise UsageError(
            f"refusing to listen on non-loopback {listen} without TLS; pass "
            "--tls-cert/--tls-key, or --insecure if a trusted network is meant"
        )
    store = Store(settings.database_url, pool_size=settings["store.workers"] + 4)
    before, after = upgrade(store)
    if before != after:
        log.info("store schema upgraded from %s to %s", before or "empty", after)
    hub_id = hub_identity(settings.data_dir)
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
        return {"expired": rt.credentials.sweep()}

    return [
        Job("presence_flush", rt.options.presence_flush_s, flush_presence, record=False),
        Job("hub_lease", hubs.HUB_LEASE_S / 3, renew_lease, record=False),
        Job("dead_hub_sweep", 30.0, sweep_dead_hubs),
        Job("credential_cache_sweep", 60.0, sweep_credentials, record=False),
    ]


async def run_hub(settings: Settings, store: Store, hub_id: str, opts: ServeOptions) -> None:
    options = HubOptions.from_settings(settings, hub_id)
    executor = StoreExecutor(store, workers=settings["store.workers"])
    runtime = HubRuntime(
        options=options,
        executor=executor,
        streams=StreamRegistry(hub_id, options.heartbeat_interval_s),
        credentials=CredentialCache(executor, options.handshake_deadline_s),
    )
    server = grpc.aio.server(
        interceptors=[ErrorMappingInterceptor()],
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", options.max_chunk_bytes + 64 * 1024),
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
    servicer = AgentOrchestrator(runtime)
    mesh_pb2_grpc.add_AgentOrchestratorServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        port = server.add_insecure_port(opts.listen)
    except RuntimeError:
        raise Unavailable(
            f"cannot listen on {opts.listen}: the address is in use or not "
            "available here; pick another with --listen"
        ) from None
    host, _ = split_address(opts.listen)
    address = f"{host}:{port}"
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    jobs = core_jobs(runtime) + [make(runtime) for make in opts.extra_jobs]
    scheduler = Scheduler(jobs)
    scheduler.start()
    reconciler = asyncio.create_task(Reconciler(runtime).run(), name="reconciler")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if opts.ready_file is not None:
        await executor.run(
            write_atomic,
            opts.ready_file,
            json.dumps({"address": address, "hub_id": hub_id, "pid": os.getpid()}) + "\n",
        )
    log.info("hub %s serving on %s (store %s)", hub_id, address, store.display_url)

    await stop.wait()
    log.info("shutting down: draining streams (grace %gs)", SHUTDOWN_GRACE_S)
    runtime.draining = True
    await health_servicer.enter_graceful_shutdown()
    for stream in runtime.streams.streams():
        stream.close("the hub is shutting down; reconnect shortly", "UNAVAILABLE")
    await server.stop(SHUTDOWN_GRACE_S)
    reconciler.cancel()
    await asyncio.wait([reconciler], timeout=SHUTDOWN_GRACE_S)
    await scheduler.stop()
    await runtime.drain_background(timeout=15.0)
    await scheduler.run_once("presence_flush")
    await executor.session(hubs.stop_hub, hub_id, write=True, timeout=10.0)
    executor.shutdown()
    log.info("hub %s stopped", hub_id)


def serve(settings: Settings, opts: ServeOptions) -> None:
    store, hub_id = prepare(settings, opts.listen, opts.insecure)
    try:
        asyncio.run(run_hub(settings, store, hub_id, opts))
    finally:
        store.dispose()
