"""One stream per node across hubs, and policies reaching the nodes of every hub.

PostgreSQL only, real `cortexctl serve` processes and real agents. A node whose
connection to hub A is cut on its side only (A's end stays open, as behind a load
balancer or a NAT that lost its mapping) reconnects through hub B: A closes its older
stream as superseded, long before its silence watchdog would, and work follows B.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.helpers import CORTEXCTL, Hub, Proc, cli_json, run_cli
from tests.integration.test_multihub import hub_env, start_together, use_store

pytestmark = pytest.mark.integration


class SwitchingProxy:
    """A TCP front that sends its first connection to ``first`` and every later one to
    ``then``; ``cut_first`` closes the first connection on the client's side only."""

    def __init__(self, first: str, then: str) -> None:
        self.targets = [first, then]
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.frozen: set[int] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                index = len(self.pairs)
                host, port = self.targets[0 if index == 0 else 1].rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)))
                self.pairs.append((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(index, src, dst), daemon=True).start()

    def _pump(self, index: int, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if index in self.frozen:
                    return  # the hub's end stays open; nothing more crosses
                dst.sendall(data)
        except OSError:
            return

    def cut_first(self) -> None:
        with self.lock:
            client, _upstream = self.pairs[0]
            self.frozen.add(0)
        client.shutdown(socket.SHUT_RDWR)
        client.close()

    def close(self) -> None:
        self.listener.close()
        for client, upstream in self.pairs:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()


@pytest.fixture
def two_hubs(
    pg_url: str, tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    def make(**env: str) -> list[Hub]:
        use_store(monkeypatch, pg_url, tmp_path / "cli")
        hubs = []
        for name in ("a", "b"):
            hub_vars = hub_env(pg_url, tmp_path / f"hub-{name}" / "data", isolated_env)
            hub_vars.update(env)
            hubs.append(Hub(tmp_path / f"hub-{name}", hub_vars, heartbeat="3s"))
        made.extend(hubs)
        start_together(hubs)
        return hubs

    made: list[Hub] = []
    yield make
    for hub in made:
        hub.kill()


def agent(tmp_path: Path, name: str, hub: str, env: dict[str, str], token: str = "") -> Proc:
    root = tmp_path / "agents" / name
    (root / "workspace").mkdir(parents=True, exist_ok=True)
    args = [
        *CORTEXCTL,
        "agent",
        "--hub",
        hub,
        "--workspace",
        str(root / "workspace"),
        "--state-dir",
        str(root / "state"),
        "--name",
        name,
        "--log-format",
        "text",
    ]
    if token:
        (root / "invite.token").write_text(token)
        (root / "invite.token").chmod(0o600)
        args += ["--token-file", str(root / "invite.token")]
    return Proc(args, env, root / "agent.log").start()


def node(name: str) -> dict[str, Any]:
    return next((n for n in cli_json("nodes", "list") if n["name"] == name), {})


def test_a_node_reconnecting_through_another_hub_has_one_stream(
    two_hubs: Any, tmp_path: Path
) -> None:
    hub_a, hub_b = two_hubs()
    proxy = SwitchingProxy(hub_a.address, hub_b.address)
    token = cli_json("invites", "create", "--sandbox", "permissive")["token"]
    mover = agent(tmp_path, "mover", proxy.address, hub_a.env, token)
    try:
        wait_until(lambda: node("mover").get("hub_id") == hub_a.hub_id, 15, "mover on hub A")
        # In flight across the move: the node reports it on its new stream, so it goes on.
        submitted = run_cli(
            "tasks", "submit", "mover", "--json", "--", "sh", "-c", "sleep 2; echo held"
        )
        assert submitted.exit_code == 0, submitted.stderr
        running = json.loads(submitted.stdout)
        wait_until(
            lambda: cli_json("tasks", "show", running["id"])["state"] == "running",
            15,
            "the task to run",
        )
        proxy.cut_first()  # the agent sees its connection drop; hub A does not
        wait_until(
            lambda: node("mover").get("hub_id") == hub_b.hub_id,
            15,
            f"mover on hub B:\n{mover.log()}",
        )
        # A closes its older stream as superseded (its silence watchdog would take 9 s and
        # say so instead).
        wait_until(
            lambda: "superseded by a newer stream" in hub_a.log(),
            10,
            f"hub A to close its older stream:\n{hub_a.log()}",
        )
        assert f"on hub {hub_b.hub_id}" in hub_a.log()
        assert "sent nothing for" not in hub_a.log()
        shown = cli_json("nodes", "show", "mover")
        assert shown["hub_id"] == hub_b.hub_id and shown["online"]

        def counted() -> dict[str, int]:
            return {h["id"]: h["nodes_connected"] for h in cli_json("hubs", "list")}

        # Each hub reports its count with its own lease renewal: wait for both reports.
        wait_until(
            lambda: (c := counted()).get(hub_a.hub_id) == 0 and c.get(hub_b.hub_id) == 1,
            15,
            "hub A to count no stream and hub B one",
        )
        # The task in flight across the move was not failed: it ended through hub B.
        done = wait_until(
            lambda: (
                (t := cli_json("tasks", "show", running["id"]))["state"] in ("succeeded", "failed")
                and t
            ),
            20,
            "the held task to end",
        )
        assert done["state"] == "succeeded", done
        assert done["hub_id"] == hub_b.hub_id
        # A new task runs once, through B.
        marker = tmp_path / "agents" / "mover" / "workspace" / "once.txt"
        after = run_cli(
            "tasks",
            "submit",
            "mover",
            "--wait",
            "--wait-timeout",
            "30s",
            "--json",
            "--",
            "sh",
            "-c",
            "echo run >> once.txt",
        )
        assert after.exit_code == 0, after.stderr
        assert json.loads(after.stdout)["hub_id"] == hub_b.hub_id
        assert marker.read_text() == "run\n"
        # Presence stays with B: A's presence flush no longer writes the row back.
        assert node("mover")["hub_id"] == hub_b.hub_id
    finally:
        mover.kill()
        proxy.close()


def test_a_policy_change_reaches_the_nodes_of_every_hub_without_the_poll(
    two_hubs: Any, tmp_path: Path
) -> None:
    # The hubs poll once a minute: only the NOTIFY each of them LISTENs for can be in time.
    hub_a, hub_b = two_hubs(CORTEX_POLL_INTERVAL="60s")
    token = cli_json("invites", "create", "--uses", "2")["token"]
    agents = [
        agent(tmp_path, "on-a", hub_a.address, hub_a.env, token),
        agent(tmp_path, "on-b", hub_b.address, hub_b.env, token),
    ]
    try:
        wait_until(
            lambda: (
                node("on-a").get("hub_id") == hub_a.hub_id
                and node("on-b").get("hub_id") == hub_b.hub_id
                and node("on-a")["online"]
                and node("on-b")["online"]
            ),
            20,
            "a node online on each hub",
        )
        changed = cli_json("nodes", "sandbox", "on-a", "on-b", "--permissive")
        revision = {row["name"]: row["revision"] for row in changed}
        wait_until(
            lambda: all(
                cli_json("nodes", "show", name)["policy_acked"] == revision[name]
                for name in ("on-a", "on-b")
            ),
            10,
            "both nodes to acknowledge the new policy without a poll",
        )
    finally:
        for proc in agents:
            proc.kill()
