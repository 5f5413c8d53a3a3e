"""Several hubs on one PostgreSQL store: members with leases, start-up races, agents that
fail over, `serve --processes N`; and SQLite, which takes one hub. Real processes only.

PostgreSQL tests use the ``pg_url`` fixture: they fail when it is unreachable under CI and
skip only locally. Leases are 2 s (``CORTEX_LEASE``) so the suite stays fast.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.helpers import CORTEXCTL, Hub, Proc, child_env, cli_json, run_cli

pytestmark = pytest.mark.integration
LEASE = "2s"


def hub_env(url: str, data_dir: Path, home: Path) -> dict[str, str]:
    env = child_env({"CORTEX_DATABASE_URL": url, "CORTEX_DATA_DIR": str(data_dir)}, home)
    env["CORTEX_LEASE"] = LEASE
    return env


def use_store(monkeypatch: pytest.MonkeyPatch, url: str, data_dir: Path) -> None:
    """Point in-process CLI calls at the store the hubs share."""
    monkeypatch.setenv("CORTEX_DATABASE_URL", url)
    monkeypatch.setenv("CORTEX_DATA_DIR", str(data_dir))


def live_hubs() -> list[dict[str, Any]]:
    return [hub for hub in cli_json("hubs", "list") if hub["state"] == "live"]


def recovered(hub_id: str) -> dict[str, Any] | None:
    """The hub's row once a survivor (or a clean stop) ended its membership, else None."""
    return next(
        (
            h
            for h in cli_json("hubs", "list", "--all")
            if h["id"] == hub_id and h["state"] == "stopped"
        ),
        None,
    )


def start_together(hubs: list[Hub]) -> None:
    """Start every hub at the same instant (a barrier before each launch)."""
    barrier = threading.Barrier(len(hubs))
    errors: list[BaseException] = []

    def launch(hub: Hub) -> None:
        barrier.wait()
        try:
            hub.start()
        except BaseException as err:  # noqa: BLE001 - reported below, with the hub's log
            errors.append(err)

    threads = [threading.Thread(target=launch, args=(hub,)) for hub in hubs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, "\n\n".join(str(err) for err in errors)


@pytest.fixture
def hubs_on_pg(
    pg_url: str, tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """A factory of hubs on one fresh PostgreSQL schema, each with its own data dir."""
    started: list[Hub] = []
    use_store(monkeypatch, pg_url, tmp_path / "cli")

    def make(count: int) -> list[Hub]:
        made = [
            Hub(
                tmp_path / f"hub{len(started) + i}",
                hub_env(pg_url, tmp_path / f"hub{len(started) + i}" / "data", isolated_env),
            )
            for i in range(count)
        ]
        started.extend(made)
        return made

    yield make
    for hub in started:
        hub.kill()


def test_three_hubs_started_at_once_on_an_empty_schema_all_serve(hubs_on_pg: Any) -> None:
    hubs = hubs_on_pg(3)
    start_together(hubs)  # each raises, with its log, if it exited (e.g. 5) or never served
    members = wait_until(lambda: len(live_hubs()) == 3 and live_hubs(), 15, "3 live hubs")
    assert {hub["id"] for hub in members} == {hub.hub_id for hub in hubs}
    assert {hub["address"] for hub in members} == {hub.address for hub in hubs}
    for member in members:
        assert member["epoch"] >= 1  # more if its 2 s lease lapsed while it started
        assert member["version"]
        assert member["lease_remaining_s"] > 0
        assert member["nodes_connected"] == 0
    table = run_cli("hubs", "list")
    assert table.exit_code == 0
    for header in ("ID", "ADDRESS", "STARTED", "LEASE", "NODES", "VERSION", "EPOCH"):
        assert header in table.stdout
    for hub in hubs:
        assert hub.hub_id in table.stdout
        assert hub.stop() == 0
    assert live_hubs() == []
    stopped = cli_json("hubs", "list", "--all")
    assert {hub["state"] for hub in stopped} == {"stopped"}


def test_restarted_hub_rejoins_with_a_new_epoch(hubs_on_pg: Any) -> None:
    (hub,) = hubs_on_pg(1)
    hub.start()
    first = wait_until(lambda: live_hubs(), 15, "the hub to be live")
    # 1, or more if a loaded machine let its 2 s lease lapse before the first renewal.
    assert first[0]["epoch"] >= 1
    hub.kill()  # no clean stop: its lease lapses on the store's clock
    wait_until(
        lambda: [h for h in cli_json("hubs", "list") if h["state"] == "dead"], 15, "a dead hub"
    )
    hub.start()
    again = wait_until(lambda: live_hubs(), 15, "the hub to be live again")
    assert again[0]["id"] == first[0]["id"]
    assert again[0]["epoch"] > first[0]["epoch"]


def test_agent_given_two_hubs_moves_to_the_other_when_its_hub_is_killed(
    hubs_on_pg: Any, tmp_path: Path
) -> None:
    hub_a, hub_b = hubs_on_pg(2)
    start_together([hub_a, hub_b])
    token = cli_json("invites", "create")["token"]
    workspace = tmp_path / "agent" / "workspace"
    workspace.mkdir(parents=True)
    state = tmp_path / "agent" / "state"
    agent = Proc(
        [
            *CORTEXCTL,
            "agent",
            "--hub",
            f"{hub_a.address},{hub_b.address}",
            "--token",
            token,
            "--workspace",
            str(workspace),
            "--state-dir",
            str(state),
            "--name",
            "mover",
            "--log-format",
            "text",
        ],
        hub_a.env,
        tmp_path / "agent" / "agent.log",
    ).start()
    try:

        def node() -> dict[str, Any]:
            return next((n for n in cli_json("nodes", "list") if n["name"] == "mover"), {})

        first = wait_until(lambda: node().get("online") and node(), 15, "the node online")
        by_id = {hub_a.hub_id: hub_a, hub_b.hub_id: hub_b}
        on = by_id[first["hub_id"]]
        other = hub_b if on is hub_a else hub_a
        # The state keeps every hub it was given, so a restart without --hub fails over too.
        remembered = json.loads((state / "credential.json").read_text())["hub"]
        assert remembered == f"{hub_a.address},{hub_b.address}"
        on.kill()  # kill -9
        # Within 30 s (wait_until doubles its deadline for the loaded CI machines).
        moved = wait_until(
            lambda: (n := node()).get("online") and n.get("hub_id") == other.hub_id and n,
            15,
            f"the node online on the other hub:\n{agent.log()}",
        )
        assert moved["id"] == first["id"]
        assert agent.alive()
        # The survivor recovers the dead hub once its lease lapsed, on the store's clock.
        row = wait_until(lambda: recovered(on.hub_id), 15, "the survivor to recover the killed hub")
        assert row["recovered_by_hub_id"] == other.hub_id
    finally:
        agent.kill()


def test_serve_processes_runs_members_sharing_one_port(
    pg_url: str, tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_store(monkeypatch, pg_url, tmp_path / "cli")
    status = tmp_path / "status.json"
    parent = Hub(
        tmp_path / "hub",
        hub_env(pg_url, tmp_path / "hub" / "data", isolated_env),
        extra=("--processes", "2", "--status-file", str(status)),
    )
    parent.start()
    try:
        ready = json.loads((tmp_path / "hub" / "ready-0.json").read_text())
        assert len(ready["hub_ids"]) == 2 and len(set(ready["hub_ids"])) == 2
        members = wait_until(lambda: len(live_hubs()) == 2 and live_hubs(), 15, "2 live hubs")
        assert {m["id"] for m in members} == set(ready["hub_ids"])
        assert {m["address"] for m in members} == {parent.address}  # one shared port
        assert {m["pid"] for m in members} == set(ready["pids"])
        # Each process keeps its own status file (process 1 with a suffix).
        wait_until(lambda: status.exists() and Path(f"{status}.1").exists(), 15, "status files")
        ids = {json.loads(path.read_text())["hub"]["id"] for path in (status, Path(f"{status}.1"))}
        assert ids == set(ready["hub_ids"])
        # Agents dial the one port; the kernel spreads connections over both processes.
        token = cli_json("invites", "create", "--uses", "6")["token"]
        agents = []
        for i in range(6):
            workspace = tmp_path / f"a{i}" / "workspace"
            workspace.mkdir(parents=True)
            agents.append(
                Proc(
                    [
                        *CORTEXCTL,
                        "agent",
                        "--hub",
                        parent.address,
                        "--token",
                        token,
                        "--workspace",
                        str(workspace),
                        "--state-dir",
                        str(tmp_path / f"a{i}" / "state"),
                        "--name",
                        f"n{i}",
                    ],
                    parent.env,
                    tmp_path / f"a{i}" / "agent.log",
                ).start()
            )
        try:
            nodes = wait_until(
                lambda: (
                    len(online := [n for n in cli_json("nodes", "list") if n["online"]]) == 6
                    and online
                ),
                20,
                "6 nodes online",
            )
            assert {n["hub_id"] for n in nodes} <= set(ready["hub_ids"])
            # Each member reports its streams with its lease renewal.
            wait_until(
                lambda: sum(m["nodes_connected"] for m in live_hubs()) == 6,
                15,
                "the members to count 6 streams between them",
            )
        finally:
            for agent in agents:
                agent.kill()
        # The parent restarts a process that dies: the same hub id, a new pid and epoch.
        killed = next(m for m in members if m["pid"] == ready["pids"][1])
        os.kill(killed["pid"], signal.SIGKILL)
        wait_until(
            lambda: any(
                m["id"] == killed["id"]
                and m["pid"] != killed["pid"]
                and m["epoch"] > killed["epoch"]
                for m in live_hubs()
            ),
            20,
            f"the parent to restart the killed process:\n{parent.log()}",
        )
        assert parent.stop() == 0  # SIGTERM reaches both processes, which drain and stop
        assert live_hubs() == []
    finally:
        parent.kill()


# --- SQLite: one hub ------------------------------------------------------------------


def test_a_second_hub_on_one_sqlite_file_is_refused(tmp_path: Path, isolated_env: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'cortex.db'}"
    first = Hub(tmp_path / "one", hub_env(url, tmp_path / "one-data", isolated_env))
    first.start()
    try:
        second = subprocess.run(
            [*CORTEXCTL, "serve", "--listen", "127.0.0.1:0"],
            env=hub_env(url, tmp_path / "two-data", isolated_env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 5, second.stderr
        assert "another hub" in second.stderr
        assert f"pid {first.proc.pid if first.proc else ''}" in second.stderr
        assert "SQLite takes one hub" in second.stderr and "PostgreSQL" in second.stderr
    finally:
        assert first.stop() == 0
    # Once the first has stopped (or died: the kernel drops its lock), another may serve.
    again = Hub(tmp_path / "again", hub_env(url, tmp_path / "two-data", isolated_env))
    again.start()
    again.kill()
    after_kill = Hub(tmp_path / "after", hub_env(url, tmp_path / "two-data", isolated_env))
    after_kill.start()
    assert after_kill.stop() == 0


def test_serve_processes_on_sqlite_is_refused(tmp_path: Path, isolated_env: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'cortex.db'}"
    result = subprocess.run(
        [*CORTEXCTL, "serve", "--listen", "127.0.0.1:0", "--processes", "2"],
        env=hub_env(url, tmp_path / "data", isolated_env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "--processes needs PostgreSQL" in result.stderr


# --- the HAProxy front ------------------------------------------------------------------

HAPROXY_CONFIG = Path(__file__).parents[2] / "contrib" / "haproxy" / "cortex-hub.cfg"


def haproxy() -> str:
    found = shutil.which("haproxy")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("haproxy is required in CI (.ci/run installs it) and is not installed")
        pytest.skip("haproxy is not installed")
    return found


def test_the_haproxy_example_config_is_valid() -> None:
    result = subprocess.run(
        [haproxy(), "-c", "-f", str(HAPROXY_CONFIG)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = HAPROXY_CONFIG.read_text()
    assert "mode tcp" in text and "timeout tunnel" in text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_agent_reaches_a_hub_through_the_haproxy_example(mesh: Any, tmp_path: Path) -> None:
    """The example, pointed at a real hub, carries a node's stream."""
    binary = haproxy()
    unused_tcp_port = free_port()
    hub_host, hub_port = mesh.hub.address.rsplit(":", 1)
    config = HAPROXY_CONFIG.read_text()
    config = config.replace("bind :50051", f"bind 127.0.0.1:{unused_tcp_port}")
    config = config.replace("maxconn 20000", "maxconn 256")
    config = config.replace("server hub-a 10.0.0.11:50051", f"server hub-a {hub_host}:{hub_port}")
    config = "\n".join(line for line in config.splitlines() if "server hub-b" not in line)
    config = "\n".join(line for line in config.splitlines() if "server hub-c" not in line)
    path = tmp_path / "haproxy.cfg"
    path.write_text(config + "\n")
    proxy = subprocess.Popen(
        [binary, "-db", "-f", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        address = f"127.0.0.1:{unused_tcp_port}"
        original = mesh.hub.address
        mesh.hub.address = address  # agents dial the proxy
        try:
            mesh.start_agent("behind-proxy", mesh.invite())
        finally:
            mesh.hub.address = original
        assert mesh.node("behind-proxy")["online"]
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(30)
