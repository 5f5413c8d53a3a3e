"""A real hub started in-process on port 0, for tests that reach inside it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cortexctl.config import load_settings
from cortexctl.core import invites
from cortexctl.hub.runtime import HubRuntime
from cortexctl.hub.scheduler import Job
from cortexctl.hub.server import HubServer, ServeOptions
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from cortexctl.store.engine import Store

pytestmark = pytest.mark.integration


def run_hub(
    store: Store,
    data_dir: Path,
    extra_jobs: list[Callable[[HubRuntime], Job]],
    scenario: Callable[[HubServer], Any],
) -> Any:
    settings = load_settings(
        {"store.data_dir": str(data_dir), "hub.heartbeat_interval": "0.2s"}, None, {}
    )

    async def main() -> Any:
        hub = HubServer(
            settings, store, "hub_test", ServeOptions(listen="127.0.0.1:0", extra_jobs=extra_jobs)
        )
        await hub.start()
        try:
            return await scenario(hub)
        finally:
            await hub.stop()
            hub.executor.shutdown()

    return asyncio.run(main())


def test_heartbeats_are_acked_while_a_maintenance_job_blocks(
    fresh_store: Store, data_dir: Path
) -> None:
    with fresh_store.session() as session:
        token = invites.create_invite(session, ttl_s=60).token
    release = threading.Event()
    started = threading.Event()

    def slow_job(rt: HubRuntime) -> Job:
        def block() -> dict[str, Any]:
            started.set()
            release.wait(60)
            return {}

        async def run() -> dict[str, Any]:
            return await rt.executor.run(block, timeout=90)

        return Job("slow", 3600, run, run_at_start=True)

    async def scenario(hub: HubServer) -> int:
        async with grpc.aio.insecure_channel(hub.address) as channel:
            stub = pb_grpc.AgentOrchestratorStub(channel)
            config = await stub.SyncConfiguration(pb.SyncConfigurationRequest(invite_token=token))
            await asyncio.to_thread(started.wait, 30)
            call = stub.TaskStream(metadata=[("authorization", f"Bearer {config.node_credential}")])
            first = await call.read()
            assert first.WhichOneof("body") == "policy"
            acked = 0
            for seq in range(1, 6):
                await call.write(pb.NodeMessage(heartbeat=pb.Heartbeat(seq=seq)))
                reply = await call.read()
                assert reply.heartbeat_ack.seq == seq
                acked += 1
            assert not release.is_set()  # all of it happened while the job was blocked
            release.set()
            await call.done_writing()
            return acked

    assert run_hub(fresh_store, data_dir, [slow_job], scenario) == 5


def test_health_and_reflection(fresh_store: Store, data_dir: Path) -> None:
    async def scenario(hub: HubServer) -> tuple[int, list[str]]:
        async with grpc.aio.insecure_channel(hub.address) as channel:
            status = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="cortex.mesh.v1.AgentOrchestrator")
            )
            reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
            call = reflect.ServerReflectionInfo()
            await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            reply = await call.read()
            await call.done_writing()
            names = [s.name for s in reply.list_services_response.service]
            return status.status, names

    status, services = run_hub(fresh_store, data_dir, [], scenario)
    assert status == health_pb2.HealthCheckResponse.SERVING
    assert "cortex.mesh.v1.AgentOrchestrator" in services
    assert "grpc.health.v1.Health" in services
