"""Policy features are negotiated: a node gets only tasks whose policy it reported it enforces."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import grpc

from cortexctl.core import features
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from tests.conftest import wait_until
from tests.helpers import Mesh, cli_json, run_cli


def _heartbeats(stop: threading.Event) -> Iterator[pb.NodeMessage]:
    seq = 0
    while not stop.is_set():
        seq += 1
        yield pb.NodeMessage(heartbeat=pb.Heartbeat(seq=seq))
        stop.wait(0.5)  # the heartbeat interval of this raw node


def _submit(node: str, *argv: str) -> str:
    result = run_cli("tasks", "submit", node, "--json", "--", *argv)
    assert result.exit_code == 0, result.stderr
    return str(json.loads(result.stdout)["id"])


def _task(task_id: str) -> dict[str, object]:
    return dict(cli_json("tasks", "show", task_id))


def _join(stub: pb_grpc.AgentOrchestratorStub, token: str, name: str, caps: list[str]) -> str:
    config = stub.SyncConfiguration(
        pb.SyncConfigurationRequest(invite_token=token, requested_name=name, capabilities=caps)
    )
    # The handshake carries the new policy fields.
    assert config.sandbox.limits.open_files > 0 and config.sandbox.limits.cpu_seconds > 0
    return str(config.node_credential)


def test_an_agent_reporting_no_features_gets_no_strict_task(mesh: Mesh) -> None:
    with grpc.insecure_channel(mesh.hub.address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        old = _join(stub, mesh.invite(), "old", [])
        new = _join(stub, mesh.invite(), "new", ["tasks", *features.POLICY_FEATURES])
        for name in ("old", "new"):
            assert run_cli("nodes", "sandbox", name, "--allow", "ls").exit_code == 0
        streams = {}
        stop = threading.Event()
        for name, credential in (("old", old), ("new", new)):
            streams[name] = stub.TaskStream(
                _heartbeats(stop), metadata=[("authorization", f"Bearer {credential}")]
            )
            first = next(streams[name])
            assert first.WhichOneof("body") == "policy"
            assert first.policy.allowed_commands == ["ls"]
        wait_until(lambda: mesh.node("old").get("online"), 10, "the raw node to be online")
        refused = _submit("old", "ls")
        sent = _submit("new", "ls")
        wait_until(lambda: _task(refused)["state"] == "rejected", 10, "the task to be refused")
        task = _task(refused)
        assert str(task["error"]).startswith("FAILED_PRECONDITION")
        assert "policy.env" in str(task["error"]) and "upgrade the agent" in str(task["error"])
        assert task["dispatched_at"] is None
        # The node that reported the features does get its task.
        while True:
            message = next(streams["new"])
            if message.WhichOneof("body") == "assign":
                break
        assert message.assign.task_id == sent and list(message.assign.argv) == ["ls"]
        stop.set()
        for stream in streams.values():
            stream.cancel()
