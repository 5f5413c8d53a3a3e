"""Three hubs on one PostgreSQL under load and faults: exactly-once dispatch of 1,000 tasks
submitted across them, kill -9 of a hub, and a hub frozen (SIGSTOP) past its lease.

PostgreSQL only, real `cortexctl serve` processes, real agents given every hub's address,
real submitters (CLI processes on the store and the admin API of each hub). Leases are
2 s (``CORTEX_LEASE``), so a lapse is judged within seconds; each test waits on conditions
with deadlines, never on a sleep.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import exc, func, select

from cortexctl.client import Hub as AdminClient
from cortexctl.core import hubs
from cortexctl.errors import CortexError
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from cortexctl.store.engine import Store, upgrade
from cortexctl.store.models import Hub as HubRow
from cortexctl.store.models import SyncLease
from tests.conftest import wait_until
from tests.helpers import CORTEXCTL, Hub, Proc, cli_json, scrape
from tests.integration.test_multihub import (
    hub_env,
    live_hubs,
    recovered,
    start_together,
    use_store,
)
from tests.integration.test_multihub_streams import agent

pytestmark = pytest.mark.integration
POOL = "pool=multihub"
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out", "rejected", "expired"}


def metrics_port() -> int:
    """A free port below the kernel's ephemeral range: the hubs' gRPC ports (port 0) come
    from that range and could take a port picked there before its hub binds it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


class Fleet:
    """Hubs (each with a metrics port) and agents given every hub's address."""

    def __init__(self, root: Path, url: str, home: Path) -> None:
        self.root, self.url, self.home = root, url, home
        self.hubs: list[Hub] = []
        self.metrics: dict[str, str] = {}  # hub id -> metrics address
        self.agents: dict[str, Proc] = {}

    def start_hubs(self, count: int) -> list[Hub]:
        made = []
        for i in range(count):
            env = hub_env(self.url, self.root / f"hub{i}" / "data", self.home)
            env["CORTEX_METRICS_LISTEN"] = f"127.0.0.1:{metrics_port()}"
            made.append(Hub(self.root / f"hub{i}", env))
        self.hubs.extend(made)  # before they start: close() stops any that did
        start_together(made)
        for hub in made:
            self.metrics[hub.hub_id] = hub.env["CORTEX_METRICS_LISTEN"]
        return made

    def start_agents(self, count: int) -> list[str]:
        token = cli_json(
            "invites", "create", "--uses", str(count), "--sandbox", "permissive", "--label", POOL
        )["token"]
        addresses = ",".join(hub.address for hub in self.hubs)
        names = [f"n{i}" for i in range(count)]
        for name in names:
            self.agents[name] = agent(self.root, name, addresses, self.hubs[0].env, token)
        wait_until(
            lambda: sum(1 for n in nodes().values() if n["online"]) == count,
            30,
            f"{count} nodes online",
        )
        return names

    def workspace(self, name: str) -> Path:
        return self.root / "agents" / name / "workspace"

    def by_id(self, hub_id: str) -> Hub:
        return next(hub for hub in self.hubs if hub.hub_id == hub_id)

    def metric(self, hub: Hub, name: str) -> float:
        return scrape(self.metrics[hub.hub_id], name)

    def close(self) -> None:
        for proc in self.agents.values():
            if proc.alive():
                proc.signal(signal.SIGCONT)
                proc.signal(signal.SIGTERM)
        for proc in self.agents.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for hub in self.hubs:
            if hub.proc is not None and hub.proc.alive():
                hub.proc.signal(signal.SIGCONT)
            hub.kill()


@pytest.fixture
def fleet(pg_url: str, tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    use_store(monkeypatch, pg_url, tmp_path / "cli")
    made = Fleet(tmp_path, pg_url, isolated_env)
    yield made
    made.close()


def nodes() -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in cli_json("nodes", "list", "-l", POOL)}


def task(task_id: str) -> dict[str, Any]:
    return dict(cli_json("tasks", "show", task_id))


def running(task_id: str) -> list[int]:
    """Host pids of the processes of a task (found by the CORTEX_TASK_ID in their
    environment: inside a sandbox's PID namespace the task's own ``$$`` means nothing here);
    zombies run nothing and are left out."""
    marker = f"CORTEX_TASK_ID={task_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
        except (OSError, IndexError):
            continue
        found.append(int(entry.name))
    return found


def admin_token() -> str:
    return str(
        cli_json("admin-tokens", "create", "--role", "operator", "--name", "submitter")["token"]
    )


def placement(fleet: Fleet) -> dict[str, list[str]]:
    """Hub id -> the names of the nodes whose stream it holds."""
    by_hub: dict[str, list[str]] = {hub.hub_id: [] for hub in fleet.hubs}
    for name, row in nodes().items():
        if row["online"]:
            by_hub.setdefault(row["hub_id"], []).append(name)
    return by_hub


def recoveries(hubs: list[Hub], dead: Hub) -> list[str]:
    """The survivors' log lines saying they recovered ``dead``."""
    return [
        line
        for hub in hubs
        for line in hub.log().splitlines()
        if f"recovered dead hub {dead.hub_id}" in line
    ]


# --- 1,000 tasks across three hubs: each runs exactly once --------------------------------

APPEND = 'echo "$CORTEX_TASK_ID" >> ran.txt'
API_PER_HUB = 328  # x 3 hubs
# Each round one task per node (4): 16. Few: a CLI process takes 20 s to start at load 50.
CLI_PROCESSES, CLI_ROUNDS = 2, 2
AGENTS = 4


@pytest.mark.timeout(900)  # 1,000 real sandboxed processes on a shared two-core machine
def test_a_thousand_tasks_submitted_across_three_hubs_run_exactly_once(fleet: Fleet) -> None:
    hubs = fleet.start_hubs(3)
    names = fleet.start_agents(AGENTS)
    token = admin_token()
    submitted: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(len(hubs) + 1)

    def through_api(hub: Hub, offset: int) -> None:
        try:
            with AdminClient.connect(hub.address, token=token) as client:
                start.wait()
                for i in range(API_PER_HUB):
                    made = client.submit(names[(offset + i) % len(names)], script=APPEND)
                    with lock:
                        submitted.append(made.id)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=through_api, args=(hub, i)) for i, hub in enumerate(hubs)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.monotonic()
    # The CLI submitters write to the store; the hub holding each node's stream dispatches.
    loop = (
        f"for i in $(seq {CLI_ROUNDS}); do "
        f"{' '.join(CORTEXCTL)} tasks submit -l {POOL} --script '{APPEND}' -o jsonl || exit 1; "
        "done"
    )
    cli = [
        subprocess.Popen(
            ["sh", "-c", loop],
            env=hubs[0].env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(CLI_PROCESSES)
    ]
    for proc in cli:
        out, err = proc.communicate(timeout=700)
        assert proc.returncode == 0, err
        for line in out.splitlines():
            if line.strip():
                submitted.append(json.loads(line)["id"])
    for thread in threads:
        thread.join()
    assert not errors, errors
    total = API_PER_HUB * len(hubs) + CLI_PROCESSES * CLI_ROUNDS * AGENTS
    assert len(submitted) == len(set(submitted)) == total == 1000

    def ended() -> list[dict[str, Any]] | None:
        rows = cli_json("tasks", "list", "-l", POOL, "--limit", "5000")
        done = [t for t in rows if t["state"] in TERMINAL]
        return rows if len(done) == total else None

    rows = wait_until(ended, 360, "all 1,000 tasks to end")
    elapsed = time.monotonic() - began
    assert {t["id"] for t in rows} == set(submitted)
    assert Counter(t["state"] for t in rows) == {"succeeded": total}, Counter(
        (t["state"], t.get("error", "")) for t in rows if t["state"] != "succeeded"
    )
    ran = Counter(
        line
        for name in names
        for line in (fleet.workspace(name) / "ran.txt").read_text().split()
        if (fleet.workspace(name) / "ran.txt").exists()
    )
    assert set(ran) == set(submitted), "a task is missing from the files"
    assert [tid for tid, count in ran.items() if count > 1] == [], "a task ran twice"
    # Each ran on the node it was submitted to, and every hub dispatched some.
    for name in names:
        lines = (fleet.workspace(name) / "ran.txt").read_text().split()
        assert {t["node_name"] for t in rows if t["id"] in set(lines)} == {name}
    print(f"1,000 tasks over 3 hubs and {AGENTS} nodes ended in {elapsed:.1f} s")


# --- kill -9 of a hub --------------------------------------------------------------------

HOLD = "exec sleep 300"


def start_holding(name: str) -> str:
    """A task that runs until stopped on node ``name``; returns its id once it runs."""
    task_id = str(cli_json("tasks", "submit", name, "--script", HOLD)["id"])
    wait_until(
        lambda: task(task_id)["state"] == "running" and running(task_id),
        30,
        f"task {task_id} to run on {name}",
    )
    return task_id


def credential(fleet: Fleet, name: str) -> str:
    state = fleet.root / "agents" / name / "state" / "credential.json"
    return str(json.loads(state.read_text())["node_credential"])


def leases_of(url: str, hub_id: str) -> int:
    store = Store(url, pool_size=1)
    try:
        with store.session() as session:
            query = select(func.count()).select_from(SyncLease).where(SyncLease.hub_id == hub_id)
            return int(session.scalar(query) or 0)
    finally:
        store.dispose()


@pytest.mark.timeout(300)  # 3 hubs and 4 agents start first: a minute on a loaded machine
def test_kill_9_of_a_hub_moves_its_nodes_and_fails_its_tasks_once(fleet: Fleet) -> None:
    hubs = fleet.start_hubs(3)
    names = fleet.start_agents(AGENTS)
    # With 4 nodes on 3 hubs one hub holds two or more: that one dies.
    on = placement(fleet)
    victim = fleet.by_id(max(on, key=lambda hub_id: len(on[hub_id])))
    survivors = [hub for hub in hubs if hub is not victim]
    mine = on[victim.hub_id]
    assert len(mine) >= 2
    # One of its nodes is frozen across the death, so it cannot bring its task to a
    # survivor before the survivors judge the lease: that task must be failed, once.
    frozen, *moving = mine
    held = {name: start_holding(name) for name in mine}
    # An upload in progress on the victim: its store lease must go with it.
    upload = threading.Event()

    def uploading() -> None:
        channel = grpc.insecure_channel(victim.address)
        stub = pb_grpc.AgentOrchestratorStub(channel)  # type: ignore[no-untyped-call]

        def chunks() -> Any:
            yield pb.FileChunk(path="big.bin", data=b"x" * 1024)
            upload.wait(120)  # never sends the rest

        metadata = [("authorization", f"Bearer {credential(fleet, moving[0])}")]
        try:
            stub.SyncFile(chunks(), metadata=metadata, timeout=120)
        except grpc.RpcError:
            pass  # the hub died under it
        finally:
            channel.close()

    uploader = threading.Thread(target=uploading, daemon=True)
    uploader.start()
    try:
        wait_until(lambda: leases_of(fleet.url, victim.hub_id) == 1, 15, "the upload lease")
        fleet.agents[frozen].signal(signal.SIGSTOP)
        # (A starved hub's 2 s lease may have lapsed at start-up, and been taken over.)
        earlier = len(recoveries(survivors, victim))
        killed_at = time.monotonic()
        victim.kill()  # kill -9
        failed_task = held[frozen]
        # Exactly one survivor recovers it once its lease lapsed on the store's clock.
        row = wait_until(
            lambda: recovered(victim.hub_id), 15, "a survivor to recover the killed hub"
        )
        assert row["recovered_by_hub_id"] in {hub.hub_id for hub in survivors}
        failed = task(failed_task)
        assert failed["state"] == "failed"
        assert victim.hub_id in failed["error"] and "stopped renewing its lease" in failed["error"]
        # Its presence rows and upload leases went in the same transaction.
        assert leases_of(fleet.url, victim.hub_id) == 0
        assert not [n for n in nodes().values() if n["online"] and n["hub_id"] == victim.hub_id]
        fleet.agents[frozen].signal(signal.SIGCONT)
        # Every node of the dead hub is online on a survivor within 30 s of the kill.
        wait_until(
            lambda: all(
                (row := nodes()[name])["online"] and row["hub_id"] != victim.hub_id for name in mine
            ),
            15,
            "the dead hub's nodes online on the survivors",
        )
        moved_in = time.monotonic() - killed_at
        assert moved_in < 30, f"{moved_in:.1f} s"
        # The frozen node was told its task ended: its process is stopped, none outlives it.
        wait_until(lambda: not running(failed_task), 15, "the failed task's processes to end")
        # The nodes that moved at once brought their tasks to a survivor (adopted, they run
        # on) or found them failed by the recovery (then they stop them): never both.
        for name in moving:
            task_id = held[name]
            row = task(task_id)
            if row["state"] == "failed":
                assert victim.hub_id in row["error"]
                wait_until(lambda t=task_id: not running(t), 15, f"{task_id}'s processes to end")
            else:
                assert row["state"] == "running" and row["hub_id"] != victim.hub_id, row
                assert running(task_id)
        # Failed exactly once: one recovery, by one survivor, and the journal row unchanged.
        lines = recoveries(survivors, victim)
        assert len(lines) == earlier + 1, lines
        wait_until(
            lambda: not [n for n in names if nodes()[n]["hub_id"] == victim.hub_id],
            15,
            "no presence row left on the dead hub",
        )
        again = task(failed_task)
        assert (again["state"], again["finished_at"], again["error"]) == (
            "failed",
            failed["finished_at"],
            failed["error"],
        )
        print(f"the dead hub's nodes were online on the survivors {moved_in:.1f} s after kill -9")
    finally:
        upload.set()
        fleet.agents[frozen].signal(signal.SIGCONT)


# --- SIGSTOP of a hub past its lease, then SIGCONT -----------------------------------------

GATED = 'until [ -e go ]; do sleep 0.1; done; echo "$CORTEX_TASK_ID" >> done.txt'


def health_watch(address: str) -> tuple[list[str], threading.Thread, grpc.Channel]:
    """Every health status ``address`` announces, in order, collected by a thread."""
    seen: list[str] = []
    channel = grpc.insecure_channel(address)
    stub = health_pb2_grpc.HealthStub(channel)

    def watch() -> None:
        try:
            for answer in stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=300):
                seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))
        except grpc.RpcError:
            return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    wait_until(lambda: seen == ["SERVING"], 15, "the health watch to start")
    return seen, thread, channel


@pytest.mark.timeout(300)  # hubs and agents start first: a minute on a loaded machine
def test_a_hub_frozen_past_its_lease_is_fenced_and_rejoins(fleet: Fleet) -> None:
    hubs = fleet.start_hubs(2)
    names = fleet.start_agents(2)
    on = placement(fleet)
    victim = fleet.by_id(max(on, key=lambda hub_id: len(on[hub_id])))
    survivors = [hub for hub in hubs if hub is not victim]
    name = on[victim.hub_id][0]
    workspace = fleet.workspace(name)
    # (A starved hub's 2 s lease may have lapsed at start-up: count from here.)
    earlier = len(recoveries(survivors, victim))
    fences = fleet.metric(victim, "cortex_hub_fences_total")
    before = next(h for h in live_hubs() if h["id"] == victim.hub_id)
    assert fleet.metric(victim, "cortex_hub_epoch") >= before["epoch"]
    original = cli_json("tasks", "submit", name, "--script", GATED)["id"]
    wait_until(
        lambda: task(original)["state"] == "running" and running(original),
        30,
        "the gated task to run",
    )
    seen, watcher, channel = health_watch(victim.address)
    assert victim.proc is not None
    victim.proc.signal(signal.SIGSTOP)
    try:
        # A survivor judges the lease on the store's clock and fails the task once.
        wait_until(lambda: task(original)["state"] == "failed", 15, "a survivor to fail the task")
        failed = task(original)
        assert victim.hub_id in failed["error"]
        row = recovered(victim.hub_id)
        assert row is not None, "the frozen hub is not recorded as recovered"
        assert row["recovered_by_hub_id"] in {hub.hub_id for hub in survivors}
        # A retry, submitted while the frozen hub still holds the node's stream.
        retry = cli_json("tasks", "submit", name, "--script", GATED)["id"]
        assert running(original)  # the frozen hub's node still runs it: the fence must stop it
    finally:
        victim.proc.signal(signal.SIGCONT)
    # It wakes, finds itself taken over, stops serving, cancels, closes, rejoins.
    wait_until(lambda: not running(original), 15, "the failed task's processes to stop")
    assert not (workspace / "done.txt").exists()
    rejoined = wait_until(
        lambda: next(
            (h for h in live_hubs() if h["id"] == victim.hub_id and h["epoch"] > before["epoch"]),
            None,
        ),
        20,
        f"the fenced hub to rejoin with a new epoch:\n{victim.log()}",
    )
    assert rejoined["address"] == victim.address
    wait_until(lambda: seen[-1:] == ["SERVING"] and "NOT_SERVING" in seen, 15, "health")
    assert seen == ["SERVING", "NOT_SERVING", "SERVING"], seen
    channel.close()
    watcher.join(10)
    assert fleet.metric(victim, "cortex_hub_fences_total") == fences + 1
    assert fleet.metric(victim, "cortex_hub_epoch") >= rejoined["epoch"]
    assert fleet.metric(victim, "cortex_hub_fenced") == 0
    assert "lost its membership" in victim.log()
    # The retry runs once, wherever the node went; the failed original never finishes.
    wait_until(lambda: task(retry)["state"] == "running", 30, "the retry to run")
    (workspace / "go").touch()
    wait_until(lambda: task(retry)["state"] in TERMINAL, 30, "the retry to end")
    assert task(retry)["state"] == "succeeded"
    assert (workspace / "done.txt").read_text().split() == [retry]
    again = task(original)
    assert (again["state"], again["finished_at"]) == ("failed", failed["finished_at"])
    assert len(recoveries(survivors, victim)) == earlier + 1
    # The fenced hub closed its other streams too: those nodes come back through any hub.
    wait_until(lambda: all(nodes()[n]["online"] for n in names), 30, "every node back online")


# --- a session frozen inside a transaction loses its locks --------------------------------


def test_a_hub_session_idle_in_a_transaction_is_ended_and_its_locks_freed(pg_url: str) -> None:
    """What a hub frozen mid-transaction holds (here: its membership row FOR SHARE, as every
    task move does) is released by PostgreSQL after the idle-in-transaction timeout, so a
    survivor can take the hub over; and the frozen session finds it was ended."""
    frozen = Store(pg_url, pool_size=1, idle_in_transaction_s=0.5)
    survivor = Store(pg_url, pool_size=1)
    try:
        upgrade(survivor)
        with frozen.session(write=True) as session:
            hubs.register_hub(session, "hub_frozen", "127.0.0.1:1", 60)
        held = frozen.engine.connect()
        transaction = held.begin()
        held.execute(select(HubRow.id).where(HubRow.id == "hub_frozen").with_for_update(read=True))

        def takeover_locks_it() -> bool:
            try:
                with survivor.session(write=True) as session:
                    query = (
                        select(HubRow.id)
                        .where(HubRow.id == "hub_frozen")
                        .with_for_update(nowait=True)
                    )
                    return session.execute(query).first() is not None
            except CortexError:
                return False  # lock_not_available: the frozen session still holds it

        assert not takeover_locks_it()
        wait_until(takeover_locks_it, 15, "PostgreSQL to end the idle session")
        with pytest.raises(exc.DBAPIError):
            held.execute(select(func.now()))
        with contextlib.suppress(exc.DBAPIError):
            transaction.rollback()
        held.close()
    finally:
        frozen.dispose()
        survivor.dispose()
