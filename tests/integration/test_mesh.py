"""The working mesh end to end: real hub and agent processes over loopback gRPC."""

from __future__ import annotations

import os
import signal
import stat

import grpc
import pytest

from cortexctl.errors import EXIT_REFUSED
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from tests.conftest import wait_until
from tests.helpers import Mesh, cli_json, run_cli

pytestmark = pytest.mark.integration


def task_state(task_id: str) -> str:
    return str(cli_json("tasks", "show", task_id)["state"])


def test_join_defaults_to_strict_and_keeps_credential_private(mesh: Mesh) -> None:
    agent = mesh.start_agent("n1", mesh.invite())
    node = mesh.node("n1")
    assert node["online"] is True
    assert node["sandbox"] == "strict"
    assert node["hostname"]
    # The stream's claim marks the node online; the presence flush then records a heartbeat.
    wait_until(lambda: mesh.node("n1")["last_heartbeat"] is not None, 15, "a recorded heartbeat")
    credential = mesh.root / "agents" / "n1" / "state" / "credential.json"
    assert stat.S_IMODE(credential.stat().st_mode) == 0o600
    # A later run needs no token: it rejoins with the stored credential as the same node.
    agent.stop()
    wait_until(lambda: not mesh.node("n1")["online"], 15, "n1 to go offline")
    mesh.start_agent("n1")
    assert [n["name"] for n in cli_json("nodes", "list")] == ["n1"]


def test_strict_node_rejects_scripts_and_unlisted_commands(mesh: Mesh) -> None:
    mesh.start_agent("n1", mesh.invite())
    script = run_cli("tasks", "submit", "n1", "--script", "echo hi", "--json")
    assert script.exit_code == 1
    assert "PERMISSIVE" in script.stderr
    unlisted = run_cli("tasks", "submit", "n1", "--json", "--", "echo", "hi")
    assert unlisted.exit_code == 1
    assert "not allowed" in unlisted.stderr
    states = {t["state"] for t in cli_json("tasks", "list", "--node", "n1")}
    assert states == {"rejected"}

    cli_json("nodes", "sandbox", "n1", "--strict", "--allow", "echo")
    done = run_cli("tasks", "submit", "n1", "--wait", "--json", "--", "echo", "hello")
    assert done.exit_code == 0, done.stderr
    assert '"stdout": "hello\\n"' in done.stdout


def test_permissive_runs_bash_and_reports_failures(mesh: Mesh) -> None:
    mesh.start_agent("n1", mesh.invite("--sandbox", "permissive"))
    assert mesh.node("n1")["sandbox"] == "permissive"
    ok = run_cli(
        "tasks", "submit", "n1", "--wait", "--json", "--script", "echo out; echo err >&2; pwd"
    )
    assert ok.exit_code == 0, ok.stderr
    task = cli_json("tasks", "show", cli_json_from(ok.stdout)["id"])
    assert task["state"] == "succeeded"
    assert task["exit_code"] == 0
    assert task["stdout"].splitlines()[0] == "out"
    assert os.path.realpath(task["stdout"].splitlines()[1]) == os.path.realpath(
        mesh.workspace("n1")
    )
    assert task["stderr"] == "err\n"

    bad = run_cli("tasks", "submit", "n1", "--wait", "--json", "--script", "exit 7")
    assert bad.exit_code == 7  # --wait exits with the task's own code
    failed = cli_json_from(bad.stdout)
    assert failed["state"] == "failed"
    assert failed["exit_code"] == 7

    slow = run_cli(
        "tasks", "submit", "n1", "--wait", "--json", "--timeout", "1s", "--script", "sleep 30"
    )
    assert slow.exit_code == 121  # timed out on the node: not a code of its own
    assert cli_json_from(slow.stdout)["state"] == "timed_out"


def cli_json_from(text: str) -> dict[str, object]:
    import json

    value = json.loads(text)
    assert isinstance(value, dict)
    return value


def test_policy_change_reaches_the_connected_node(mesh: Mesh) -> None:
    mesh.start_agent("n1", mesh.invite())
    before = cli_json("nodes", "show", "n1")
    changed = cli_json("nodes", "sandbox", "n1", "--permissive")
    assert changed[0]["revision"] == before["policy_revision"] + 1
    # The node acknowledges the pushed revision; the hub records the ack.
    wait_until(
        lambda: cli_json("nodes", "show", "n1")["policy_acked"] == changed[0]["revision"],
        10,
        "the node to acknowledge the new policy",
    )
    assert "sandbox policy now permissive" in mesh.agents[0].log()
    done = run_cli("tasks", "submit", "n1", "--wait", "--script", "echo via bash")
    assert done.exit_code == 0, done.stderr


def test_killed_agent_fails_its_running_task_with_a_diagnostic(mesh: Mesh) -> None:
    agent = mesh.start_agent("n1", mesh.invite("--sandbox", "permissive"))
    task_id = cli_json("tasks", "submit", "n1", "--script", "sleep 60")["id"]
    wait_until(lambda: task_state(task_id) == "running", 10, "the task to run")
    agent.kill()
    wait_until(lambda: task_state(task_id) == "failed", 15, "the task to fail")
    task = cli_json("tasks", "show", task_id)
    assert "n1" in task["error"] and task["node_id"] in task["error"]
    assert "lost its stream" in task["error"]


def test_frozen_agent_is_caught_by_the_heartbeat_timeout(mesh: Mesh) -> None:
    agent = mesh.start_agent("n1", mesh.invite("--sandbox", "permissive"))
    task_id = cli_json("tasks", "submit", "n1", "--script", "sleep 60")["id"]
    wait_until(lambda: task_state(task_id) == "running", 10, "the task to run")
    agent.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: task_state(task_id) == "failed", 20, "the task to fail")
        error = cli_json("tasks", "show", task_id)["error"]
        assert "went silent" in error and "while hub" in error and "grace" in error
        wait_until(lambda: not mesh.node("n1")["online"], 10, "the node to be offline")
    finally:
        agent.signal(signal.SIGCONT)


def test_hub_restart_fails_tasks_whose_node_does_not_come_back(mesh: Mesh) -> None:
    agent = mesh.start_agent("n1", mesh.invite("--sandbox", "permissive"))
    task_id = cli_json("tasks", "submit", "n1", "--script", "sleep 60")["id"]
    wait_until(lambda: task_state(task_id) == "running", 10, "the task to run")
    agent.kill()
    mesh.hub.kill()
    assert task_state(task_id) == "running"  # nobody could have failed it yet
    mesh.hub.start()
    wait_until(lambda: task_state(task_id) == "failed", 15, "the grace to pass")
    error = cli_json("tasks", "show", task_id)["error"]
    assert "restarted" in error and mesh.hub.hub_id in error and "grace" in error
    # The agent comes back (it kills its previous run's leftovers first) and runs new work.
    mesh.start_agent("n1")
    again = run_cli("tasks", "submit", "n1", "--wait", "--script", "true")
    assert again.exit_code == 0, again.stderr


def test_cancel_stops_the_running_task_on_the_node(mesh: Mesh) -> None:
    mesh.start_agent("n1", mesh.invite("--sandbox", "permissive"))
    task_id = cli_json("tasks", "submit", "n1", "--script", "sleep 60")["id"]
    wait_until(lambda: task_state(task_id) == "running", 10, "the task to run")
    assert cli_json("tasks", "cancel", task_id)["state"] == "cancelled"
    wait_until(
        lambda: f"cancelling task {task_id}" in mesh.agents[0].log(),
        10,
        "the agent to be told to cancel",
    )
    assert cli_json("nodes", "show", "n1")["running_tasks"] in (0, 1)
    wait_until(
        lambda: cli_json("nodes", "show", "n1")["running_tasks"] == 0,
        10,
        "the node to report no running task",
    )


def test_journal_fail_ends_every_unfinished_task(mesh: Mesh) -> None:
    mesh.start_agent("n1", mesh.invite("--sandbox", "permissive"))
    ids = [cli_json("tasks", "submit", "n1", "--script", "sleep 60")["id"] for _ in range(2)]
    wait_until(lambda: all(task_state(t) == "running" for t in ids), 10, "tasks to run")
    assert cli_json("journal", "fail", "n1", "--reason", "reimaged")["failed_tasks"] == 2
    assert {task_state(t) for t in ids} == {"failed"}
    assert cli_json("journal", "fail", "n1")["failed_tasks"] == 0  # idempotent


def test_used_up_token_is_refused(mesh: Mesh) -> None:
    token = mesh.invite()
    mesh.start_agent("n1", token)
    second = mesh.start_agent("n2", token, wait_online=False)
    assert second.wait(30) == EXIT_REFUSED
    assert "used up" in second.log()
    assert [n["name"] for n in cli_json("nodes", "list")] == ["n1"]


def test_revoked_node_is_disconnected_and_refused(mesh: Mesh) -> None:
    agent = mesh.start_agent("n1", mesh.invite())
    revoked = cli_json("nodes", "revoke", "n1", "--yes")
    assert revoked["revoked"] is True
    # The stream ends PERMISSION_DENIED; the agent gives up with the code systemd's
    # RestartPreventExitStatus= names, so a revoked agent is not restarted in a loop.
    assert agent.wait(15) == EXIT_REFUSED
    assert "revoked" in agent.log()
    assert mesh.node("n1")["status"] == "revoked"
    again = mesh.start_agent("n1", wait_online=False)
    assert again.wait(30) == EXIT_REFUSED
    assert "PERMISSION_DENIED" in again.log()


def test_second_stream_supersedes_the_first(mesh: Mesh) -> None:
    agent = mesh.start_agent("n1", mesh.invite())
    import json

    credential = json.loads((mesh.root / "agents/n1/state/credential.json").read_text())
    with grpc.insecure_channel(mesh.hub.address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        stream = stub.TaskStream(
            iter([pb.NodeMessage(heartbeat=pb.Heartbeat(seq=1))]),
            metadata=[("authorization", f"Bearer {credential['node_credential']}")],
        )
        first = next(stream)
        assert first.WhichOneof("body") == "policy"
        assert next(stream).heartbeat_ack.seq == 1
        stream.cancel()
    wait_until(lambda: "superseded" in agent.log(), 10, "the agent's stream to be superseded")


def test_bad_credentials_get_unauthenticated(mesh: Mesh) -> None:
    with grpc.insecure_channel(mesh.hub.address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        for metadata in ([], [("authorization", "Bearer cortex-node.nd_x.nope")]):
            stream = stub.TaskStream(iter([]), metadata=metadata)
            with pytest.raises(grpc.RpcError) as caught:
                next(stream)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as caught:
            stub.SyncConfiguration(pb.SyncConfigurationRequest(invite_token="garbage"))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as caught:
            stub.SyncConfiguration(pb.SyncConfigurationRequest())
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_sigterm_stops_the_hub_cleanly(mesh: Mesh) -> None:
    mesh.start_agent("n1", mesh.invite())
    assert mesh.hub.stop() == 0
    assert "stopped" in mesh.hub.log()
    wait_until(lambda: not mesh.node("n1")["online"], 10, "the node to show offline")
