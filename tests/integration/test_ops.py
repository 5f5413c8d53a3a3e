"""Operating a live hub: mesh status (once, live, as events), status file, metrics, health."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import socket
import struct
import subprocess
import termios
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cortexctl.client import Hub as AdminHub
from cortexctl.errors import EXIT_REFUSED, PermissionDenied
from tests.conftest import wait_until
from tests.helpers import CORTEXCTL, Hub, Mesh, cli_json

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def statuses(mesh: Mesh) -> dict[str, str]:
    return {node["name"]: node["status"] for node in cli_json("mesh", "status")["nodes"]}


def test_mesh_status_follows_connect_freeze_and_revoke(tmp_path: Path, mesh: Mesh) -> None:
    # The mesh fixture's 1 s heartbeats leave a window in which a frozen node is stale.
    mesh.start_agent("steady", mesh.invite())
    frozen = mesh.start_agent("frozen", mesh.invite())
    doomed = mesh.start_agent("doomed", mesh.invite())
    snap = cli_json("mesh", "status")
    assert snap["summary"]["online_count"] == 3 and snap["summary"]["hub_count"] == 1
    assert snap["summary"]["online"] == 3  # the old name, kept for one release
    assert {n["hub_id"] for n in snap["nodes"]} == {mesh.hub.hub_id}

    frozen.signal(signal.SIGSTOP)
    try:
        # Frozen: stale first, then offline within 3 heartbeat intervals plus a flush.
        wait_until(lambda: statuses(mesh)["frozen"] == "stale", 10, "frozen to look stale")
        wait_until(lambda: statuses(mesh)["frozen"] == "offline", 10, "frozen to be offline")
    finally:
        frozen.signal(signal.SIGCONT)
    cli_json("nodes", "revoke", "doomed", "--yes")
    assert doomed.wait(15) == EXIT_REFUSED
    final = statuses(mesh)
    assert final["doomed"] == "revoked"
    assert final["steady"] == "online"


def test_follow_in_a_terminal_shows_a_node_appear(mesh: Mesh) -> None:
    primary, secondary = pty.openpty()
    # A terminal of a real size (a new pty is 0x0, which rich takes for 80 columns).
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(
        [*CORTEXCTL, "mesh", "status", "--follow", "--interval", "0.3s"],
        env=mesh.env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        close_fds=True,
    )
    os.close(secondary)
    seen = b""

    def screen_has(text: bytes) -> bool:
        nonlocal seen
        while select.select([primary], [], [], 0.05)[0]:
            try:
                seen += os.read(primary, 65536)
            except OSError:
                break
        return text in seen

    try:
        wait_until(lambda: screen_has(b"0 node(s)"), 20, "the live view to draw")
        mesh.start_agent("late-joiner", mesh.invite())
        wait_until(lambda: screen_has(b"late-joiner"), 20, "the new node in the live view")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        proc.kill()
        os.close(primary)


def test_watch_events_prints_json_lines(mesh: Mesh) -> None:
    agent = mesh.start_agent("n1", mesh.invite("--sandbox", "permissive"))
    watcher = subprocess.Popen(
        [*CORTEXCTL, "mesh", "status", "--watch-events", "--jsonl", "--interval", "0.2s"],
        env=mesh.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        events: list[dict[str, str]] = []
        assert watcher.stdout is not None
        assert json.loads(watcher.stdout.readline())["event"] == "watching"
        cli_json("tasks", "submit", "n1", "--wait", "--script", "true")
        cli_json("nodes", "sandbox", "n1", "--strict")
        agent.kill()
        wanted_audit = {("tasks.submit", "local"), ("nodes.sandbox", "local")}

        def audited() -> set[tuple[str, str]]:
            return {(e["action"], e["actor_kind"]) for e in events if e["event"] == "audit"}

        # Until the last wanted event: a change's audit entry follows its own event.
        for line in watcher.stdout:
            events.append(json.loads(line))
            kinds = {e["event"] for e in events}
            if {"task_finished", "policy_changed", "node_left"} <= kinds and (
                wanted_audit <= audited()
            ):
                break
        node_id = mesh.node("n1")["id"]
        assert {e["node_id"] for e in events if e["event"] != "audit"} == {node_id}
        # The audit log's entries are events too: the local submit and sandbox change.
        assert wanted_audit <= audited()
        finished = next(e for e in events if e["event"] == "task_finished")
        assert finished["state"] == "succeeded"
    finally:
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(15) == 0


def test_status_file_metrics_and_health_drain(tmp_path: Path, mesh: Mesh) -> None:
    mesh.hub.stop()
    status_file = tmp_path / "status.json"
    metrics = f"127.0.0.1:{free_port()}"
    hub = Hub(
        tmp_path / "hub2",
        mesh.env,
        extra=["--status-file", str(status_file), "--metrics-listen", metrics],
    )
    hub.workdir.mkdir()
    mesh.hub = hub.start()
    mesh.start_agent("n1", mesh.invite())

    def status_lists_n1() -> bool:
        try:
            document = json.loads(status_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        return any(n["name"] == "n1" and n["status"] == "online" for n in document["nodes"])

    wait_until(status_lists_n1, 20, "the status file to list n1 online")
    hub_part = json.loads(status_file.read_text())["hub"]
    assert hub_part["store"]["healthy"] is True and hub_part["store"]["failing_seconds"] == 0
    if os.environ["CORTEX_DATABASE_URL"].startswith("sqlite"):
        assert hub_part["disk_ballast"]["released"] is False
    else:  # the ballast keeps room for a SQLite store; PostgreSQL has its own disk
        assert hub_part["disk_ballast"] is None

    def scrape() -> str:
        with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10) as reply:
            return str(reply.read().decode())

    text = scrape()
    assert "cortex_connected_nodes 1.0" in text
    assert 'cortex_handshakes_total{outcome="joined"} 1.0' in text
    assert "cortex_heartbeats_total" in text and "cortex_store_queue_depth" in text
    assert "cortex_store_healthy 1.0" in text and "cortex_store_failing_seconds 0.0" in text
    # The admin API's calls, their time and its refusals.
    token = cli_json("admin-tokens", "create", "--role", "viewer", "--name", "v")["token"]
    with AdminHub.connect(hub.address, token=token) as admin:
        admin.nodes()
        with pytest.raises(PermissionDenied):
            admin.gc("invites", dry_run=True)
    text = scrape()
    assert 'cortex_admin_calls_total{code="OK",method="ListNodes"} 1.0' in text
    assert 'cortex_admin_calls_total{code="PERMISSION_DENIED",method="RunGc"} 1.0' in text
    assert 'cortex_admin_denials_total{code="PERMISSION_DENIED",method="RunGc"} 1.0' in text
    assert 'cortex_admin_call_seconds_count{method="ListNodes"} 1.0' in text

    def jobs_ran() -> dict[str, dict[str, object]]:
        jobs = {j["job"]: j for j in cli_json("mesh", "status", "--jobs")["jobs"]}
        return jobs if {"presence_flush", "invite_gc", "journal_gc"} <= set(jobs) else {}

    jobs = wait_until(jobs_ran, 20, "the hub's jobs to be recorded")
    assert {j["hub_id"] for j in jobs.values()} == {hub.hub_id}
    assert jobs["invite_gc"]["last_outcome"] == "ok" and jobs["invite_gc"]["runs"] >= 1
    assert jobs["presence_flush"]["next_run_at"] is not None

    with grpc.insecure_channel(hub.address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        assert hub.proc is not None
        hub.proc.signal(signal.SIGTERM)
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert hub.proc.wait(30) == 0
