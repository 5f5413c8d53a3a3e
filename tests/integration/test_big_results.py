"""Task results that fit: big output on both streams never kills the node's stream."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from tests.conftest import wait_until
from tests.helpers import Mesh, cli_json, run_cli

pytestmark = pytest.mark.integration
BIG = 700_000  # each stream within the 1 MiB output cap; together over the hub's limit


def test_big_stdout_and_stderr_are_recorded_truncated_and_the_stream_survives(
    mesh: Mesh,
) -> None:
    mesh.start_agent("big", mesh.invite())
    assert cli_json("nodes", "sandbox", "big", "--permissive")
    wait_until(lambda: mesh.node("big")["policy_acked"] >= 2, 10, "the policy to reach the node")
    other = cli_json("tasks", "submit", "big", "--script", "sleep 3; echo survived")["id"]
    wait_until(lambda: cli_json("tasks", "show", other)["state"] == "running", 15, "the other task")
    script = f"head -c {BIG} /dev/zero | tr '\\0' o; head -c {BIG} /dev/zero | tr '\\0' e >&2"
    done = run_cli("tasks", "submit", "big", "--wait", "--json", "--script", script)
    assert done.exit_code == 0, done.stderr
    task = cli_json("tasks", "show", cli_json("tasks", "list", "--node", "big")[0]["id"])
    limit = 1024 * 1024 + 64 * 1024  # the hub's max_message_bytes (1 MiB chunks + 64 KiB)
    assert task["state"] == "succeeded"
    assert task["output_truncated"] is True
    assert set(task["stdout"]) == {"o"} and set(task["stderr"]) == {"e"}
    assert len(task["stdout"]) + len(task["stderr"]) <= limit
    assert len(task["stdout"]) > 400_000 and len(task["stderr"]) > 400_000  # fair shares
    survivor = cli_json("tasks", "wait", other)
    assert survivor["state"] == "succeeded" and survivor["stdout"] == "survived\n"
    log = mesh.hub.log()
    assert "over the hub's limit" not in log
    assert log.count("node big") and "disconnected" not in log


@pytest.fixture
def old_agent(mesh: Mesh) -> Iterator[tuple[pb_grpc.AgentOrchestratorStub, str, str]]:
    with grpc.insecure_channel(
        mesh.hub.address, options=[("grpc.max_send_message_length", -1)]
    ) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        config = stub.SyncConfiguration(
            pb.SyncConfigurationRequest(invite_token=mesh.invite(), requested_name="old")
        )
        yield stub, config.node_credential, config.node_id


def test_an_oversized_result_is_logged_with_the_node_name(
    mesh: Mesh, old_agent: tuple[pb_grpc.AgentOrchestratorStub, str, str]
) -> None:
    stub, credential, node_id = old_agent
    acks: list[int] = []

    def messages() -> Iterator[pb.NodeMessage]:
        yield pb.NodeMessage(heartbeat=pb.Heartbeat(seq=1))
        yield pb.NodeMessage(
            task_update=pb.TaskUpdate(
                task_id="tk_none", state=pb.SUCCEEDED, stdout=b"o" * BIG, stderr=b"e" * BIG
            )
        )
        for seq in range(2, 200):
            if len(acks) >= 3:
                return
            time.sleep(0.05)
            yield pb.NodeMessage(heartbeat=pb.Heartbeat(seq=seq))

    stream = stub.TaskStream(messages(), metadata=[("authorization", f"Bearer {credential}")])
    for message in stream:
        if message.WhichOneof("body") == "heartbeat_ack":
            acks.append(message.heartbeat_ack.seq)
    assert len(acks) >= 3  # the stream outlived the oversized message
    wait_until(lambda: "over the hub's limit" in mesh.hub.log(), 10, "the hub to log it")
    line = next(x for x in mesh.hub.log().splitlines() if "over the hub's limit" in x)
    assert f"node old ({node_id})" in line


def test_announced_limit_is_in_the_handshake(
    old_agent: tuple[pb_grpc.AgentOrchestratorStub, str, str],
) -> None:
    stub, credential, _ = old_agent
    config = stub.SyncConfiguration(pb.SyncConfigurationRequest(node_credential=credential))
    assert config.max_message_bytes == 1024 * 1024 + 64 * 1024
