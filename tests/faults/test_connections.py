"""Connection floods: the hub under a 1,024 open-file limit, 2,000 idle TCP connections
and 100 bad handshakes from a legitimate node's own address."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cortexctl.agent.state import load_membership
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from tests.conftest import wait_until
from tests.helpers import Hub, Mesh, child_env, cli_json, run_cli
from tests.helpers import scrape as metric
from tests.integration.test_sync import free_port

pytestmark = pytest.mark.integration
IDLE_CONNECTIONS = 2000


def need_prlimit() -> None:
    if shutil.which("prlimit") is None:
        if os.environ.get("CI"):
            pytest.fail("prlimit (util-linux) is required in CI")
        pytest.skip("prlimit (util-linux) is not installed")


@contextlib.contextmanager
def idle_connections(address: str, count: int) -> Iterator[list[socket.socket]]:
    """``count`` TCP connections that never say a word (closed on exit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1000), hard))
    host, port = address.rsplit(":", 1)
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect((host, int(port)))
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def bad_handshakes(address: str, node_id: str, count: int) -> set[grpc.StatusCode]:
    """Wrong secrets for the node's own id, unknown invites and garbage, from 127.0.0.1."""
    tokens = [
        pb.SyncConfigurationRequest(node_credential=f"cortex-node.{node_id}.wrong"),
        pb.SyncConfigurationRequest(invite_token="cortex-invite.inv_000000000000.guess"),
        pb.SyncConfigurationRequest(invite_token="not a token at all"),
    ]
    codes = set()
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        for index in range(count):
            with pytest.raises(grpc.RpcError) as caught:
                stub.SyncConfiguration(tokens[index % len(tokens)], timeout=10)
            codes.add(caught.value.code())
    return codes


@pytest.mark.parametrize("nofile", ["1024:1024", "1024:4096"])
def test_idle_connections_and_bad_handshakes_lock_out_no_node(
    nofile: str, tmp_path: Path, store_env: dict[str, str], isolated_env: Path
) -> None:
    need_prlimit()
    metrics = f"127.0.0.1:{free_port()}"
    env = child_env(store_env, isolated_env)
    env.update(
        CORTEX_HANDSHAKE_TIMEOUT="8s", CORTEX_IDLE_TIMEOUT="8s", CORTEX_METRICS_LISTEN=metrics
    )
    hub = Hub(tmp_path / "hub", env, prefix=("prlimit", f"--nofile={nofile}", "--"))
    hub.workdir.mkdir()
    hub.start()
    mesh = Mesh(tmp_path, env, hub)
    try:
        soft, hard = (int(part) for part in nofile.split(":"))
        # The hub raised its soft limit to the hard one and sized its cap from it.
        assert metric(metrics, "cortex_fd_limit") == hard
        cap = metric(metrics, "cortex_connection_cap")
        assert cap < hard - 100
        legit = mesh.start_agent("legit", mesh.invite(), "--sync", "--sync-interval", "0.5s")
        assert cli_json("nodes", "sandbox", "legit", "--strict", "--allow", "echo")
        node_id = mesh.node("legit")["id"]
        assert bad_handshakes(hub.address, node_id, 100) <= {
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        }
        held = min(cap, IDLE_CONNECTIONS) * 0.9
        with idle_connections(hub.address, IDLE_CONNECTIONS):
            wait_until(
                lambda: metric(metrics, "cortex_open_sockets") >= held, 15, "the flood to land"
            )
            if cap < IDLE_CONNECTIONS:
                wait_until(
                    lambda: metric(metrics, "cortex_shedding_checks_total") > 0,
                    15,
                    "the hub to report shedding",
                )
                assert "shedding connections" in hub.log()
            # The connected node is served meanwhile: it uploads (the hub opens files) and
            # runs a task, while the idle connections are still held.
            (mesh.workspace("legit") / "during-flood.txt").write_text("uploaded")
            mirror = Path(env["CORTEX_DATA_DIR"]) / "mirrors" / node_id
            wait_until((mirror / "during-flood.txt").exists, 3, "an upload during the flood")
            done = run_cli("tasks", "submit", "legit", "--wait", "--", "echo", "served")
            assert done.exit_code == 0 and "served" in done.stdout, done.stderr
            assert metric(metrics, "cortex_open_sockets") >= held  # (still flooded)
            # It rejoins (a new connection and handshake), streams and uploads.
            legit.stop()
            assert load_membership(mesh.root / "agents" / "legit" / "state") is not None
            legit = mesh.start_agent("legit", None, "--sync", "--sync-interval", "0.5s")
            (mesh.workspace("legit") / "after-flood.txt").write_text("uploaded")
            wait_until((mirror / "after-flood.txt").exists, 30, "the node's upload")
            done = run_cli("tasks", "submit", "legit", "--wait", "--", "echo", "again")
            assert done.exit_code == 0, done.stderr
            # A new node joins.
            mesh.start_agent("newcomer", mesh.invite())
        assert "Too many open files" not in hub.log()
        assert hub.proc is not None and hub.proc.alive()
        assert soft == 1024
    finally:
        mesh.close()
