"""Identity on a real mesh: names are the operator's, a state dir holds one node, revocation
cuts uploads, loopback means loopback, and the hub's files are private."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from tests.conftest import wait_until
from tests.helpers import CORTEXCTL, Hub, Mesh, Proc, cli_json

pytestmark = pytest.mark.integration


def agent(mesh: Mesh, state: str, *args: str, token: str | None = None) -> Proc:
    """An agent process on state dir ``state`` (a folder under the test's root)."""
    root = mesh.root / "agents" / state
    (root / "workspace").mkdir(parents=True, exist_ok=True)
    extra = list(args)
    if token is not None:
        token_file = root / f"invite-{len(list(root.glob('invite-*')))}.token"
        token_file.write_text(token)
        extra += ["--token-file", str(token_file)]
    argv = [
        *CORTEXCTL,
        "agent",
        "--hub",
        mesh.hub.address,
        "--workspace",
        str(root / "workspace"),
        "--state-dir",
        str(root / "state"),
        "--log-format",
        "text",
        *extra,
    ]
    proc = Proc(argv, mesh.env, root / f"agent-{time.monotonic_ns()}.log").start()
    mesh.agents.append(proc)
    return proc


def invite_uses(invite_id: str) -> int:
    (invite,) = [i for i in cli_json("invites", "list", "--all") if i["id"] == invite_id]
    return int(invite["uses_count"])


def online(name: str) -> bool:
    return any(n["name"] == name and n["online"] for n in cli_json("nodes", "list"))


def test_a_used_name_is_refused_and_the_invite_use_is_kept(mesh: Mesh) -> None:
    mesh.start_agent("n1", mesh.invite())
    created = cli_json("invites", "create")
    second = agent(mesh, "other", "--name", "n1", token=created["token"])
    assert second.wait(30) == 5, second.log()
    assert "ALREADY_EXISTS" in second.log() and "'n1' is already taken" in second.log()
    assert invite_uses(created["id"]) == 0
    assert [n["name"] for n in cli_json("nodes", "list")] == ["n1"]  # no "n1-2"


def test_a_revoked_nodes_name_stays_taken_and_rejoin_replaces_its_credential(
    mesh: Mesh,
) -> None:
    first = mesh.start_agent("n1", mesh.invite())
    cli_json("nodes", "revoke", "n1", "--yes")
    assert first.wait(15) != 0
    newcomer = agent(mesh, "other", "--name", "n1", token=mesh.invite())
    assert newcomer.wait(30) == 5, newcomer.log()

    state = mesh.root / "agents" / "n1" / "state"
    old = json.loads((state / "credential.json").read_text())
    assert old["node_name"] == "n1"
    token = mesh.invite()
    # A token given to a state dir that holds a credential is refused, never ignored.
    ignored = agent(mesh, "n1", "--name", "n1-b", token=token)
    assert ignored.wait(30) == 2
    assert "already holds the credential of node n1" in ignored.log()
    assert "--state-dir" in ignored.log() and "--rejoin" in ignored.log()

    rejoined = agent(mesh, "n1", "--rejoin", "--name", "n1-b", token=token)
    wait_until(lambda: online("n1-b") or not rejoined.alive(), 30, "n1-b to come online")
    assert rejoined.alive(), rejoined.log()
    new = json.loads((state / "credential.json").read_text())
    assert (new["node_name"], new["node_id"] != old["node_id"]) == ("n1-b", True)
    assert "discarding the credential of node n1" in rejoined.log()


def test_two_agents_on_one_state_dir_the_second_refuses(mesh: Mesh) -> None:
    first = mesh.start_agent("n1", mesh.invite())
    second = agent(mesh, "n1")
    assert second.wait(30) == 5
    assert f"another agent (pid {first.pid})" in second.log()
    assert first.alive()


def test_token_on_the_command_line_works_with_a_warning(mesh: Mesh) -> None:
    proc = agent(mesh, "n1", "--name", "n1", "--token", mesh.invite())
    wait_until(lambda: online("n1") or not proc.alive(), 30, "n1 to come online")
    assert "warning: --token puts the invite token on the command line" in proc.log()


def test_the_invite_token_can_come_from_the_environment(mesh: Mesh) -> None:
    env = {**mesh.env, "CORTEX_INVITE_TOKEN": mesh.invite()}
    root = mesh.root / "agents" / "envnode"
    (root / "ws").mkdir(parents=True)
    argv = [*CORTEXCTL, "agent", "--hub", mesh.hub.address, "--workspace", str(root / "ws")]
    proc = Proc([*argv, "--state-dir", str(root / "s"), "--name", "envnode"], env, root / "log")
    mesh.agents.append(proc.start())
    wait_until(lambda: online("envnode") or not proc.alive(), 30, "envnode to come online")
    assert "--token" not in proc.log()  # no warning about the token (as --token gets)


class SlowUpload:
    """A real SyncFile call that sends a small chunk every 50 ms until the hub ends it."""

    def __init__(self, address: str, credential: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.credential = credential
        self.started = threading.Event()
        self.stop = threading.Event()
        self.ended_at: float | None = None
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def chunks(self) -> Iterator[pb.FileChunk]:
        offset, data = 0, b"x" * 4096
        while not self.stop.is_set():
            yield pb.FileChunk(path="slow.bin" if offset == 0 else "", offset=offset, data=data)
            offset += len(data)
            self.started.set()
            self.stop.wait(0.05)  # pacing a slow client, not waiting on a condition
        yield pb.FileChunk(offset=offset, is_final=True, sha256=hashlib.sha256().hexdigest())

    def _run(self) -> None:
        stub = pb_grpc.AgentOrchestratorStub(self.channel)
        try:
            stub.SyncFile(self.chunks(), metadata=[("authorization", f"Bearer {self.credential}")])
        except grpc.RpcError as err:
            self.error = err
        self.ended_at = time.monotonic()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.channel.close()


def join_raw(address: str, token: str, name: str) -> Any:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        return stub.SyncConfiguration(
            pb.SyncConfigurationRequest(invite_token=token, requested_name=name, hostname="h")
        )


CUT_WITHIN_S = 2.0  # issue 9: revocation cuts in-flight uploads within 2 s


def test_revocation_cuts_an_upload_in_flight(mesh: Mesh) -> None:
    config = join_raw(mesh.hub.address, mesh.invite(), "uploader")
    upload = SlowUpload(mesh.hub.address, config.node_credential)
    upload.thread.start()
    try:
        wait_until(upload.started.is_set, 15, "the upload to start")
        wait_until(
            lambda: cli_json("mesh", "status")["summary"]["uploads_in_flight"] == 1,
            15,
            "the hub to hold the upload",
        )
        cli_json("nodes", "revoke", "uploader", "--yes")
        revoked_at = time.monotonic()
        # The bound, not scaled like wait_until's deadlines: the call ends (and so
        # its thread) within 2 s of `nodes revoke` returning, or the test fails.
        upload.thread.join(max(0.0, revoked_at + CUT_WITHIN_S - time.monotonic()))
        assert upload.ended_at is not None, f"upload still running {CUT_WITHIN_S}s after revoke"
        delay = upload.ended_at - revoked_at
        print(f"upload cut {delay:.2f}s after `nodes revoke` returned")
        assert delay <= CUT_WITHIN_S
        assert upload.error is not None and upload.error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "revoked" in (upload.error.details() or "")
    finally:
        upload.close()
    node_dir = Path(mesh.env["CORTEX_DATA_DIR"]) / "mirrors" / config.node_id
    wait_until(lambda: not any(node_dir.glob(".cortex-sync.*")), 15, "the partial upload to go")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_hubs_files_are_private_whatever_a_node_sends(mesh: Mesh) -> None:
    mesh.start_agent("n1", mesh.invite())
    workspace = mesh.workspace("n1")
    (workspace / "tool.sh").write_text("#!/bin/sh\n")
    os.chmod(workspace / "tool.sh", 0o777)
    done = subprocess.run(
        [
            *CORTEXCTL,
            "agent",
            "sync",
            str(workspace / "tool.sh"),
            "--hub",
            mesh.hub.address,
            "--workspace",
            str(workspace),
            "--state-dir",
            str(mesh.root / "agents" / "n1" / "state"),
        ],
        env=mesh.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    data = Path(mesh.env["CORTEX_DATA_DIR"])
    node_id = mesh.node("n1")["id"]
    assert mode(data / "mirrors" / node_id / "tool.sh") == 0o640
    assert mode(data) == mode(data / "mirrors") == mode(data / "mirrors" / node_id) == 0o700
    assert mode(data / "hub_id") == 0o600
    if mesh.env["CORTEX_DATABASE_URL"].startswith("sqlite"):
        for name in ("cortex.db", "cortex.db-wal", "cortex.db-shm"):
            assert mode(data / name) == 0o600, name


def test_insecure_on_a_non_loopback_address_warns_at_start(tmp_path: Path, mesh: Mesh) -> None:
    assert "PLAINTEXT" not in mesh.hub.log()  # loopback: nothing to warn about
    mesh.hub.stop()  # SQLite takes one hub
    hub = Hub(tmp_path / "open-hub", mesh.env, extra=["--insecure"])
    hub.workdir.mkdir()
    hub.start(listen="0.0.0.0:0")
    try:
        assert "serving PLAINTEXT on non-loopback 0.0.0.0:" in hub.log()
    finally:
        hub.stop()


def test_a_name_that_looks_loopback_is_not(tmp_path: Path, mesh: Mesh) -> None:
    token = tmp_path / "token"
    token.write_text(mesh.invite())
    done = subprocess.run(
        [*CORTEXCTL, "agent", "--hub", "127.0.0.1.example.invalid:1"]
        + ["--workspace", str(tmp_path), "--token-file", str(token)],
        env=mesh.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "refusing plaintext to non-loopback hub" in done.stderr
