"""Processes die mid-work: kill -9 of the hub and of a node, SIGTERM under load.

After each, every task is terminal, no lease, lock or temp file is left, nothing
half-written is visible, the store is intact, and the same path uploads again."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from tests.conftest import wait_until
from tests.helpers import Mesh, cli_json, run_cli
from tests.integration.test_sync import (
    KILLED_CLIENT,
    SyncHub,
    bearer,
    final,
    send,
    start_sync_hub,
)

pytestmark = pytest.mark.integration
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out", "rejected"}


@pytest.fixture
def crash_hub(
    tmp_path: Path, store_env: dict[str, str], isolated_env: Path
) -> Iterator[tuple[SyncHub, Mesh]]:
    with start_sync_hub(
        tmp_path, store_env, isolated_env, CORTEX_LOCK_WAIT="0s", CORTEX_DRAIN_TIMEOUT="1s"
    ) as hub:
        mesh = Mesh(tmp_path, hub.hub.env, hub.hub)
        try:
            yield hub, mesh
        finally:
            for agent in mesh.agents:
                agent.kill()


@contextlib.contextmanager
def partial_upload(address: str, credential: str, path: str) -> Iterator[threading.Event]:
    """An upload that sends one chunk and then waits, until the connection dies."""
    release = threading.Event()

    def chunks() -> Iterator[pb.FileChunk]:
        # Enough bytes that the hub has written some of them to the temp file.
        yield pb.FileChunk(path=path, data=b"h" * 700_000)
        yield pb.FileChunk(offset=700_000, data=b"h" * 700_000)
        release.wait(60)

    def run() -> None:
        with grpc.insecure_channel(address) as channel, contextlib.suppress(grpc.RpcError):
            pb_grpc.AgentOrchestratorStub(channel).SyncFile(chunks(), metadata=bearer(credential))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield release
    finally:
        release.set()
        thread.join(30)


def store_is_intact(database_url: str) -> bool:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                return connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            # PostgreSQL: every table is readable and the journal's foreign keys hold.
            orphans = connection.exec_driver_sql(
                "SELECT count(*) FROM tasks t LEFT JOIN nodes n ON n.id = t.node_id "
                "WHERE n.id IS NULL"
            ).scalar()
            return orphans == 0
    finally:
        engine.dispose()


def assert_clean(hub: SyncHub) -> None:
    assert hub.leases() == 0
    assert hub.temp_files() == []
    assert {t["state"] for t in cli_json("tasks", "list")} <= TERMINAL
    assert store_is_intact(hub.database_url)


def test_hub_killed_mid_upload_and_mid_task(crash_hub: tuple[SyncHub, Mesh]) -> None:
    hub, mesh = crash_hub
    agent = mesh.start_agent("worker", mesh.invite("--sandbox", "permissive"))
    task_id = cli_json("tasks", "submit", "worker", "--script", "sleep 60")["id"]
    wait_until(
        lambda: cli_json("tasks", "show", task_id)["state"] == "running", 10, "the task to run"
    )
    agent.kill()  # its node does not come back: the task fails after the grace
    with partial_upload(hub.address, hub.credential, "crash/half.bin"):
        wait_until(lambda: hub.leases() == 1 and hub.temp_files(), 15, "the upload to start")
        hub.hub.kill()
    assert hub.leases() == 1 and hub.temp_files()  # what a crash leaves behind
    hub.hub.start()
    wait_until(
        lambda: cli_json("tasks", "show", task_id)["state"] == "failed", 15, "the grace to pass"
    )
    gc = cli_json("gc", "locks")
    assert gc["expired"] == []  # the restarted hub already cleaned up after itself
    assert_clean(hub)
    assert not (hub.node_mirror / "crash" / "half.bin").exists()
    code, _ = asyncio.run(
        send(hub.address, [final("crash/half.bin", b"whole")], bearer(hub.credential))
    )
    assert code == grpc.StatusCode.OK
    assert (hub.node_mirror / "crash" / "half.bin").read_bytes() == b"whole"


def test_node_killed_mid_upload_frees_the_path_at_once(
    crash_hub: tuple[SyncHub, Mesh], tmp_path: Path
) -> None:
    hub, _ = crash_hub
    client = subprocess.Popen(
        [sys.executable, "-c", KILLED_CLIENT, hub.address, hub.credential, "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None and client.stdout.readline().strip() == "ready"
        wait_until(lambda: hub.leases() == 3, 60, "three uploads in flight")
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(30)
    # The hub sees the connection drop and releases each lock; with a lock wait of 0 any
    # lock left behind would answer ABORTED here.
    wait_until(lambda: hub.leases() == 0 and not hub.temp_files(), 60, "the paths to be free")
    for index in range(3):
        code, details = asyncio.run(
            send(hub.address, [final(f"killed/{index}", b"new")], bearer(hub.credential))
        )
        assert code == grpc.StatusCode.OK, details
    # Lease rows are written and removed in batches by one writer: wait for the last one.
    wait_until(lambda: hub.leases() == 0, 30, "the new uploads' leases to be released")
    assert_clean(hub)


def test_sigterm_during_uploads_and_tasks_drains_cleanly(crash_hub: tuple[SyncHub, Mesh]) -> None:
    hub, mesh = crash_hub
    mesh.start_agent("worker", mesh.invite("--sandbox", "permissive"))
    task_id = cli_json("tasks", "submit", "worker", "--script", "sleep 60")["id"]
    wait_until(
        lambda: cli_json("tasks", "show", task_id)["state"] == "running", 10, "the task to run"
    )
    with (
        partial_upload(hub.address, hub.credential, "term/half.bin"),
        grpc.insecure_channel(hub.address) as channel,
    ):
        wait_until(lambda: hub.leases() == 1, 15, "the upload to start")
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        assert hub.hub.proc is not None
        hub.hub.proc.signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert hub.hub.proc.wait(30) == 0
    task = cli_json("tasks", "show", task_id)
    assert task["state"] == "failed" and "shutting down" in task["error"]
    assert_clean(hub)
    assert (
        not (hub.node_mirror / "term").exists() or list((hub.node_mirror / "term").iterdir()) == []
    )
    assert "stopped" in hub.hub.log()


def test_journal_survives_a_hub_crash_without_losing_finished_work(
    crash_hub: tuple[SyncHub, Mesh],
) -> None:
    hub, mesh = crash_hub
    mesh.start_agent("worker", mesh.invite("--sandbox", "permissive"))
    done = run_cli("tasks", "submit", "worker", "--wait", "--json", "--script", "echo kept")
    assert done.exit_code == 0
    hub.hub.kill()
    hub.hub.start()
    task = cli_json("tasks", "list")[0]
    assert (task["state"], task["exit_code"]) == ("succeeded", 0)
    assert cli_json("tasks", "show", task["id"])["stdout"] == "kept\n"
