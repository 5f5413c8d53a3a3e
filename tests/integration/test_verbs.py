"""The everyday verbs against a real hub and real agents: cordon and drain, expiry by the
hub's job, fan-out exit codes, Ctrl-C on --wait, logs -f, agent sync and TLS errors."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.faults.certs import make_pki
from tests.faults.test_tls import tls_hub
from tests.helpers import CORTEXCTL, Hub, Mesh, Proc, cli_json, run_cli

pytestmark = pytest.mark.integration

# A task that runs until the test creates a file named `stop` in the node's workspace.
UNTIL_STOP = "echo started; while [ ! -f stop ]; do sleep 0.05; done; echo done"


def permissive_agent(mesh: Mesh, name: str, *labels: str) -> None:
    invite = mesh.invite(*[arg for label in labels for arg in ("--label", label)])
    mesh.start_agent(name, invite)
    assert run_cli("nodes", "sandbox", name, "--permissive").exit_code == 0
    wait_until(
        lambda: (lambda n: n["policy_acked"] == n["policy_revision"])(
            cli_json("nodes", "show", name)
        ),
        15,
        f"{name} to apply its policy",
    )


def state_of(task_id: str) -> str:
    return str(cli_json("tasks", "show", task_id)["state"])


def test_a_cordoned_node_gets_nothing_and_drain_waits_for_running_tasks(mesh: Mesh) -> None:
    permissive_agent(mesh, "n1")
    agent = mesh.agents[-1]
    agent.kill()
    wait_until(lambda: mesh.node("n1")["status"] == "offline", 15, "n1 to go offline")
    queued = cli_json("tasks", "submit", "n1", "--json", "--script", "echo queued")
    assert run_cli("nodes", "cordon", "n1").exit_code == 0
    mesh.start_agent("n1")  # back with its saved credential, cordoned
    # The hub has made its connect pass once the node acks its policy on the new stream.
    wait_until(
        lambda: (lambda n: n["online"] and n["policy_acked"] == n["policy_revision"])(
            cli_json("nodes", "show", "n1")
        ),
        15,
        "n1 to be online with its policy",
    )
    assert state_of(queued["id"]) == "pending"
    assert run_cli("tasks", "submit", "n1", "--script", "true").exit_code == 5

    assert run_cli("nodes", "uncordon", "n1").exit_code == 0
    assert run_cli("tasks", "wait", queued["id"], "--timeout", "30s").exit_code == 0

    long = cli_json("tasks", "submit", "n1", "--json", "--script", UNTIL_STOP)
    wait_until(lambda: state_of(long["id"]) == "running", 15, "the task to run")
    plan = run_cli("nodes", "drain", "n1", "--dry-run")
    assert plan.exit_code == 0, plan.stderr
    assert "would cordon node n1" in plan.stdout and long["id"] in plan.stdout
    assert cli_json("nodes", "drain", "n1", "--dry-run")["dry_run"] is True
    assert cli_json("nodes", "show", "n1")["cordoned"] is False  # a dry run changes nothing
    early = run_cli("nodes", "drain", "n1", "--timeout", "0.5s")
    # The wait-expired code of `tasks wait --timeout`, from the one table.
    assert early.exit_code == 120 and "stays cordoned" in early.stderr
    assert cli_json("nodes", "show", "n1")["cordoned"] is True
    (mesh.workspace("n1") / "stop").touch()
    drained = cli_json("nodes", "drain", "n1", "--timeout", "30s")
    assert drained["cordoned"] is True
    assert state_of(long["id"]) == "succeeded"


def test_the_hubs_job_expires_queued_tasks(tmp_path: Path, mesh: Mesh) -> None:
    mesh.hub.stop()
    env = {**mesh.env, "CORTEX_TASK_EXPIRY_INTERVAL": "0.2s"}
    hub = Hub(tmp_path / "expiring", env)
    hub.workdir.mkdir()
    mesh.hub = hub.start()
    mesh.start_agent("n1", mesh.invite())
    mesh.agents[-1].kill()
    wait_until(lambda: mesh.node("n1")["status"] == "offline", 15, "n1 to go offline")
    assert run_cli("nodes", "sandbox", "n1", "--permissive").exit_code == 0
    task = cli_json("tasks", "submit", "n1", "--expire-after", "0.5s", "--script", "true")
    waited = run_cli("tasks", "wait", task["id"], "--timeout", "30s")
    assert waited.exit_code == 124, waited.stderr
    assert state_of(task["id"]) == "expired"
    # The node comes back: the expired task is not run.
    mesh.start_agent("n1")
    assert cli_json("tasks", "list", "--node", "n1")[0]["state"] == "expired"


def test_fan_out_wait_exits_with_the_worst_task(mesh: Mesh) -> None:
    permissive_agent(mesh, "a", "pool=x")
    permissive_agent(mesh, "b", "pool=x")
    (mesh.workspace("a") / "code").write_text("0")
    (mesh.workspace("b") / "code").write_text("3")
    done = run_cli("tasks", "submit", "-l", "pool=x", "--wait", "--script", "exit $(cat code)")
    assert done.exit_code == 3, done.stderr
    assert "1 of 2 task(s) succeeded" in done.stderr
    assert done.stderr.count("submitted to node") == 2


def test_ctrl_c_on_wait_off_a_terminal_says_how_to_cancel(mesh: Mesh) -> None:
    permissive_agent(mesh, "n1")
    proc = subprocess.Popen(
        [*CORTEXCTL, "tasks", "submit", "n1", "--wait", "--script", UNTIL_STOP],
        env=mesh.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the id comes before the wait
    assert first.startswith("task tk_"), first
    task_id = first.split()[1]
    wait_until(lambda: state_of(task_id) == "running", 15, "the task to run")
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert f"cortexctl tasks cancel {task_id}" in rest
    assert state_of(task_id) == "running"  # left alone
    (mesh.workspace("n1") / "stop").touch()
    assert run_cli("tasks", "wait", task_id, "--timeout", "30s").exit_code == 0


def test_logs_follow_until_the_task_ends(mesh: Mesh) -> None:
    permissive_agent(mesh, "n1")
    task = cli_json("tasks", "submit", "n1", "--json", "--script", UNTIL_STOP)
    follower = subprocess.Popen(
        [*CORTEXCTL, "tasks", "logs", task["id"][:9], "-f"],
        env=mesh.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: state_of(task["id"]) == "running", 15, "the task to run")
    assert follower.poll() is None  # still following
    (mesh.workspace("n1") / "stop").touch()
    out, err = follower.communicate(timeout=30)
    assert follower.returncode == 0, err
    assert out == "started\ndone\n"


def test_agent_sync_is_workspace_relative_skips_unchanged_and_remembers_the_hub(
    tmp_path: Path, mesh: Mesh
) -> None:
    mesh.start_agent("n1", mesh.invite())
    node_id = mesh.node("n1")["id"]
    workspace = mesh.workspace("n1")
    (workspace / "sub").mkdir()
    (workspace / "sub" / "a.txt").write_text("one")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def sync(*extra: str) -> dict[str, Any]:
        done = subprocess.run(
            [
                *CORTEXCTL,
                "agent",
                "sync",
                "sub/a.txt",
                "--workspace",
                str(workspace),
                "--state-dir",
                str(mesh.root / "agents" / "n1" / "state"),
                "--json",
                *extra,
            ],  # no --hub: the state dir remembers it
            env=mesh.env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=elsewhere,
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert isinstance(report, dict)
        return report

    first = sync()
    assert [item["path"] for item in first["uploaded"]] == ["sub/a.txt"]
    mirrored = Path(mesh.env["CORTEX_DATA_DIR"]) / "mirrors" / node_id / "sub" / "a.txt"
    assert mirrored.read_text() == "one"
    again = sync()
    assert (again["uploaded"], again["unchanged"]) == ([], 1)
    (workspace / "sub" / "a.txt").touch()  # a new mtime, the same content
    assert sync()["unchanged"] == 1
    (workspace / "sub" / "a.txt").write_text("two!")
    assert len(sync()["uploaded"]) == 1
    assert mirrored.read_text() == "two!"
    assert len(sync("--force")["uploaded"]) == 1


def run_agent(mesh: Mesh, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "ws").mkdir(exist_ok=True)
    return subprocess.run(
        [
            *CORTEXCTL,
            "agent",
            "--hub",
            mesh.hub.address,
            "--workspace",
            str(tmp_path / "ws"),
            "--state-dir",
            str(tmp_path / "state"),
            "--token",
            mesh.invite(),
            "--log-format",
            "text",
            *args,
        ],
        env=mesh.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_agent_tls_mismatches_end_with_a_hint(tmp_path: Path, mesh: Mesh) -> None:
    pki = make_pki(tmp_path / "pki")
    other = make_pki(tmp_path / "other")
    hub = tls_hub(tmp_path, mesh, pki, mutual=True)
    hub.address = f"localhost:{hub.address.rsplit(':', 1)[1]}"  # the name the cert carries
    client = ["--cert", str(pki.client_cert), "--key", str(pki.client_key)]
    foreign = ["--cert", str(other.client_cert), "--key", str(other.client_key)]
    cases = [
        (["--ca-cert", str(other.ca), *client], "is not signed by --ca-cert"),
        (["--ca-cert", str(pki.ca)], "requires a client certificate (mTLS)"),
        (["--ca-cert", str(pki.ca), *foreign], "does not accept the client certificate"),
        ([], "it serves TLS; pass --ca-cert"),
    ]
    for args, hint in cases:
        done = run_agent(mesh, tmp_path, *args)
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: cannot connect: ") and hint in last, done.stderr
        assert "ssl_transport_security" not in done.stderr  # gRPC core's own line

    # Bad files are named at start, not taken for a handshake the hub refused.
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    bad_files = [
        (["--ca-cert", str(garbage)], f"bad --ca-cert {garbage}: it is not a PEM certificate"),
        (["--ca-cert", str(broken)], f"bad --ca-cert {broken}: it is not a valid PEM CA"),
        (
            ["--ca-cert", str(pki.ca), "--cert", str(garbage), "--key", str(pki.client_key)],
            f"bad --cert {garbage}: it is not a PEM certificate",
        ),
        (
            ["--ca-cert", str(pki.ca), "--cert", str(pki.client_cert), "--key", str(garbage)],
            f"bad --key {garbage}: it is not a PEM private key",
        ),
        (
            ["--ca-cert", str(pki.ca), "--cert", str(pki.client_cert)]
            + ["--key", str(other.client_key)],
            f"--key {other.client_key} is not the key of --cert {pki.client_cert}",
        ),
    ]
    for args, message in bad_files:
        done = run_agent(mesh, tmp_path, *args)
        assert done.returncode == 2, done.stderr
        # One line after run_agent's --token warning: the file and what is wrong with it.
        errors = [line for line in done.stderr.splitlines() if not line.startswith("warning:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), done.stderr


def test_serve_names_a_bad_tls_file(tmp_path: Path, mesh: Mesh) -> None:
    pki = make_pki(tmp_path / "pki")
    other = make_pki(tmp_path / "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        (["--tls-cert", str(garbage), "--tls-key", str(pki.hub_key)], "it is not a PEM cert"),
        (["--tls-cert", str(pki.hub_cert), "--tls-key", str(garbage)], "not a PEM private key"),
        (["--tls-cert", str(pki.hub_cert), "--tls-key", str(other.hub_key)], "is not the key of"),
        (
            ["--tls-cert", str(pki.hub_cert), "--tls-key", str(pki.hub_key)]
            + ["--tls-client-ca", str(garbage)],
            "--tls-client-ca",
        ),
    ]
    for args, message in cases:
        done = subprocess.run(
            [*CORTEXCTL, "serve", "--listen", "127.0.0.1:0", *args],
            env=mesh.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "address is in use" not in done.stderr, done.stderr


def test_a_proxy_with_no_hub_behind_it_is_retried_not_diagnosed(tmp_path: Path, mesh: Mesh) -> None:
    # A TCP load balancer with no hub up accepts and closes, as a TLS mismatch does; the
    # agent probes, finds no TLS there, and keeps retrying.
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen(16)
    stop = threading.Event()

    def accept_and_close() -> None:
        proxy.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                proxy.accept()[0].close()

    closer = threading.Thread(target=accept_and_close, daemon=True)
    closer.start()
    try:
        # Both agents (plaintext, and TLS with a CA) at once: each backoff runs in parallel.
        agents: list[Proc] = []
        for extra in ([], ["--ca-cert", str(make_pki(tmp_path / "pki").ca)]):
            workspace = tmp_path / f"ws{len(extra)}"
            workspace.mkdir()
            agents.append(
                Proc(
                    [
                        *CORTEXCTL,
                        "agent",
                        "--hub",
                        f"127.0.0.1:{proxy.getsockname()[1]}",
                        "--workspace",
                        str(workspace),
                        "--state-dir",
                        str(tmp_path / f"state{len(extra)}"),
                        "--token",
                        mesh.invite(),
                        "--log-format",
                        "text",
                        *extra,
                    ],
                    mesh.env,
                    tmp_path / f"agent{len(extra)}.log",
                ).start()
            )
        try:
            # The probe comes after the second close; a third shows it kept retrying.
            def retried() -> bool:
                return all(a.log().count("Socket closed") >= 3 or not a.alive() for a in agents)

            wait_until(retried, 45, "both agents to retry the proxy")
            for agent in agents:
                assert agent.alive(), agent.log()
        finally:
            for agent in agents:
                agent.kill()
    finally:
        stop.set()
        closer.join(5)
        proxy.close()


class Terminal:
    """A command on a pseudo-terminal, as a person runs it."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.primary, secondary = pty.openpty()
        self.proc = subprocess.Popen(
            args, env=env, stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True
        )
        os.close(secondary)
        self.seen = b""

    def shows(self, text: bytes) -> bool:
        while select.select([self.primary], [], [], 0.05)[0]:
            try:
                self.seen += os.read(self.primary, 65536)
            except OSError:
                break
        return text in self.seen

    def type(self, text: bytes) -> None:
        os.write(self.primary, text)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(15)
        os.close(self.primary)


def test_ctrl_c_on_wait_at_a_terminal_offers_to_cancel(mesh: Mesh) -> None:
    permissive_agent(mesh, "n1")
    term = Terminal(
        [*CORTEXCTL, "tasks", "submit", "n1", "--wait", "--script", UNTIL_STOP], mesh.env
    )
    try:
        wait_until(lambda: term.shows(b"submitted to node n1"), 20, "the task id")
        task_id = term.seen.split(b"task ", 1)[1].split()[0].decode()
        wait_until(lambda: state_of(task_id) == "running", 15, "the task to run")
        term.proc.send_signal(signal.SIGINT)
        wait_until(lambda: term.shows(b"too? [y/N]"), 20, "the question")
        term.type(b"y\n")
        assert term.proc.wait(30) == 130
        wait_until(lambda: term.shows(b"cancelled " + task_id.encode()), 10, "the answer")
        assert state_of(task_id) == "cancelled"
        cancels = [e for e in cli_json("audit", "list") if e["action"] == "tasks.cancel"]
        assert [e["target"] for e in cancels] == [task_id]  # audited like `tasks cancel`
    finally:
        term.close()


def test_revoke_at_a_terminal_asks_first(mesh: Mesh) -> None:
    mesh.start_agent("n1", mesh.invite())
    term = Terminal([*CORTEXCTL, "nodes", "revoke", "n1"], mesh.env)
    try:
        wait_until(lambda: term.shows(b"[y/N]"), 20, "the question")
        assert cli_json("nodes", "show", "n1")["revoked"] is False
        term.type(b"y\n")
        assert term.proc.wait(30) == 0
        assert cli_json("nodes", "show", "n1")["revoked"] is True
    finally:
        term.close()
