"""Nothing lost, nothing blamed wrongly: real hubs and agents under faults.

A cut stream and a restarted hub within the grace, a hub stopped (SIGSTOP) for four
heartbeat intervals, SIGTERM with pending and running tasks, kill -9 of an agent whose task
has children and grandchildren, a full disk during results, the SQLite file removed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.helpers import CORTEXCTL, Hub, Mesh, Proc, child_env, cli_json, run_cli

pytestmark = pytest.mark.integration
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out", "rejected", "expired"}


def state(task_id: str) -> str:
    return str(cli_json("tasks", "show", task_id)["state"])


def show(task_id: str) -> dict[str, object]:
    return dict(cli_json("tasks", "show", task_id))


@contextlib.contextmanager
def make_mesh(tmp_path: Path, store_env: dict[str, str], home: Path, *extra: str) -> Iterator[Mesh]:
    env = child_env(store_env, home)
    hub = Hub(tmp_path / "hub", env, extra=["--lost-node-grace", "10s", *extra])
    hub.workdir.mkdir(exist_ok=True)
    hub.start()
    mesh = Mesh(tmp_path, env, hub)
    try:
        yield mesh
    finally:
        mesh.close()


@pytest.fixture
def lost_mesh(tmp_path: Path, store_env: dict[str, str], isolated_env: Path) -> Iterator[Mesh]:
    """A hub with 1 s heartbeats and a 10 s lost-node grace; agents started by tests."""
    with make_mesh(tmp_path, store_env, isolated_env, "--drain-timeout", "3s") as mesh:
        yield mesh


def ran_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


# --- a stream cut, a hub restarted: the node comes back within the grace ------------------


class CutProxy:
    """A TCP proxy whose connections can all be dropped at once (a cut stream)."""

    def __init__(self, target: str) -> None:
        self.target_host, port = target.rsplit(":", 1)
        self.target_port = int(port)
        self.loop = asyncio.new_event_loop()
        self.writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.cuts = 0
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    def cut(self) -> None:
        def drop() -> None:
            self.cuts += 1
            for writer in list(self.writers):
                with contextlib.suppress(Exception):
                    writer.transport.abort()

        self.loop.call_soon_threadsafe(drop)

    def close(self) -> None:
        async def shutdown() -> None:
            for writer in list(self.writers):
                writer.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def start_agent_via(mesh: Mesh, name: str, hub: str, token: str | None) -> Proc:
    saved = mesh.hub.address
    mesh.hub.address = hub
    try:
        return mesh.start_agent(name, token)
    finally:
        mesh.hub.address = saved


def test_cut_stream_within_the_grace_the_task_goes_on_and_is_recorded_once(
    lost_mesh: Mesh,
) -> None:
    proxy = CutProxy(lost_mesh.hub.address)
    try:
        agent = start_agent_via(
            lost_mesh, "n1", f"127.0.0.1:{proxy.port}", lost_mesh.invite("--sandbox", "permissive")
        )
        ran = lost_mesh.workspace("n1") / "ran.txt"
        task_id = cli_json(
            "tasks",
            "submit",
            "n1",
            "--script",
            'echo "$CORTEX_TASK_ID" >> ran.txt; sleep 4; echo done',
        )["id"]
        wait_until(lambda: state(task_id) == "running", 10, "the task to run")
        proxy.cut()
        wait_until(lambda: "disconnected" in lost_mesh.hub.log(), 10, "the hub to see the cut")
        wait_until(
            lambda: lost_mesh.hub.log().count("connected from") >= 2, 20, "the node to reconnect"
        )
        wait_until(lambda: state(task_id) in TERMINAL, 20, "the task to end")
        task = show(task_id)
        assert (task["state"], task["stdout"]) == ("succeeded", "done\n"), task
        assert ran_lines(ran) == [task_id]  # it ran once
        assert agent.alive()
    finally:
        proxy.close()


def test_hub_restarted_within_the_grace_the_task_goes_on_and_is_recorded_once(
    lost_mesh: Mesh,
) -> None:
    lost_mesh.start_agent("n1", lost_mesh.invite("--sandbox", "permissive"))
    ran = lost_mesh.workspace("n1") / "ran.txt"
    task_id = cli_json(
        "tasks", "submit", "n1", "--script", 'echo "$CORTEX_TASK_ID" >> ran.txt; sleep 4; echo done'
    )["id"]
    wait_until(lambda: state(task_id) == "running", 10, "the task to run")
    lost_mesh.hub.kill()
    lost_mesh.hub.start()  # the same address: the agent reconnects by itself
    wait_until(lambda: state(task_id) in TERMINAL, 30, "the task to end")
    task = show(task_id)
    assert (task["state"], task["stdout"]) == ("succeeded", "done\n"), task
    assert ran_lines(ran) == [task_id]


def test_stream_end_leaves_pending_tasks_pending(lost_mesh: Mesh) -> None:
    agent = lost_mesh.start_agent("n1", lost_mesh.invite("--sandbox", "permissive"))
    agent.kill()
    wait_until(lambda: not lost_mesh.node("n1")["online"], 20, "the node to be offline")
    task_id = cli_json("tasks", "submit", "n1", "--script", "echo later")["id"]
    lost_mesh.hub.kill()
    lost_mesh.hub.start()
    assert state(task_id) == "pending"
    lost_mesh.start_agent("n1")
    assert run_cli("tasks", "wait", task_id).exit_code == 0


# --- a stall of the hub is not blamed on its nodes --------------------------------------


def test_sigstop_of_the_hub_for_four_intervals_closes_no_stream_and_fails_no_task(
    lost_mesh: Mesh,
) -> None:
    lost_mesh.start_agent("n1", lost_mesh.invite("--sandbox", "permissive"))
    lost_mesh.start_agent("n2", lost_mesh.invite("--sandbox", "permissive"))
    running = [
        cli_json("tasks", "submit", name, "--script", "sleep 5; echo ran")["id"]
        for name in ("n1", "n2")
    ]
    wait_until(lambda: all(state(t) == "running" for t in running), 10, "the tasks to run")
    hub = lost_mesh.hub.proc
    assert hub is not None
    hub.signal(signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        # Submitted while the hub is stopped: they must be dispatched once it runs again.
        pending = [
            cli_json("tasks", "submit", name, "--script", "echo after")["id"]
            for name in ("n1", "n2")
        ]
        time.sleep(max(0.0, 4.0 - (time.monotonic() - stopped)))  # the fault: 4 intervals
    finally:
        hub.signal(signal.SIGCONT)
    for task_id in running + pending:
        wait_until(lambda t=task_id: state(t) in TERMINAL, 30, f"task {task_id} to end")
        assert state(task_id) == "succeeded", show(task_id)
    log = lost_mesh.hub.log()
    assert "stalled for" in log  # the hub saw its own stall ...
    assert "went silent" not in log and "disconnected" not in log  # ... and blamed no node
    # Their presence rows catch up with the next heartbeat flush (the stall left them
    # stale, and the hub's own lease may have lapsed); the streams stay the same ones.
    wait_until(
        lambda: all(lost_mesh.node(name)["online"] for name in ("n1", "n2")),
        10,
        "both nodes to show online again",
    )
    assert lost_mesh.hub.log().count("connected from") == 2  # no node had to reconnect


def test_a_silent_node_is_still_caught_and_named(lost_mesh: Mesh) -> None:
    agent = lost_mesh.start_agent("n1", lost_mesh.invite("--sandbox", "permissive"))
    task_id = cli_json("tasks", "submit", "n1", "--script", "sleep 60")["id"]
    wait_until(lambda: state(task_id) == "running", 10, "the task to run")
    agent.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: state(task_id) == "failed", 30, "the grace to pass")
    finally:
        agent.signal(signal.SIGCONT)
    error = str(show(task_id)["error"])
    assert "went silent" in error and "n1" in error and "10s grace" in error


# --- SIGTERM: pending stay pending, running get the drain timeout -------------------------


def test_sigterm_keeps_pending_tasks_and_gives_running_ones_the_drain_timeout(
    lost_mesh: Mesh,
) -> None:
    lost_mesh.start_agent("n1", lost_mesh.invite("--sandbox", "permissive"))
    offline = lost_mesh.start_agent("n2", lost_mesh.invite("--sandbox", "permissive"))
    offline.kill()
    wait_until(lambda: not lost_mesh.node("n2")["online"], 20, "n2 to be offline")
    # The quick task ends when the test says so, after the hub has begun its drain: a
    # loaded machine cannot make it miss the 3 s, and it must still be running at SIGTERM.
    workspace = lost_mesh.workspace("n1")
    started, go = workspace / "quick-started", workspace / "quick-go"
    quick_script = "touch quick-started; until [ -e quick-go ]; do sleep 0.05; done; echo finished"
    quick = cli_json("tasks", "submit", "n1", "--script", quick_script)["id"]
    slow = cli_json("tasks", "submit", "n1", "--script", "sleep 60")["id"]
    queued = cli_json("tasks", "submit", "n2", "--script", "echo queued")["id"]
    wait_until(lambda: state(slow) == "running" and started.exists(), 20, "the tasks to run")
    hub = lost_mesh.hub.proc
    assert hub is not None
    hub.signal(signal.SIGTERM)  # drain timeout 3 s
    wait_until(lambda: "shutting down" in hub.log(), 20, "the hub to begin its drain")
    assert state(quick) == "running"
    go.touch()
    assert hub.wait(30) == 0
    assert (state(quick), show(quick)["stdout"]) == ("succeeded", "finished\n")
    assert state(slow) == "failed"
    error = str(show(slow)["error"])
    assert "shutting down" in error and "3s drain timeout" in error
    assert state(queued) == "pending"  # it never left the hub
    lost_mesh.hub.start()
    lost_mesh.start_agent("n2")
    assert run_cli("tasks", "wait", queued).exit_code == 0


# --- kill -9 of an agent: no process of its task survives its restart -------------------

FAMILY = r"""
echo "$$" >> pids
(sleep 300 & echo "$!" >> pids; wait) &
echo "$!" >> pids
bash -c 'sleep 300 & echo "$!" >> pids; wait' &
echo "$!" >> pids
{escapes}
sleep 300
"""
ESCAPES = r"""
setsid sleep 300 &
echo "$!" >> pids
setsid bash -c 'sleep 300 & echo "$!" >> pids; wait' &
echo "$!" >> pids
"""


def alive(pid: int, since_ticks: int) -> bool:
    """A live (non-zombie) process with this pid, started at or after ``since_ticks``."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0] != "Z" and int(fields[19]) >= since_ticks


def boot_ticks_now() -> int:
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return int(uptime * os.sysconf("SC_CLK_TCK")) - 5


@pytest.mark.parametrize("containment", ["auto", "pgroup"])
def test_kill_9_of_an_agent_leaves_no_process_of_its_task(
    lost_mesh: Mesh, containment: str
) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("containment is Linux only")
    if containment == "auto" and os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the cgroup containment test needs root in CI")
        pytest.skip("cgroup containment needs root")
    lost_mesh.env["CORTEX_AGENT_CONTAINMENT"] = containment
    # --isolation none: this tests the reaper itself; under bubblewrap the pids a task sees
    # are its own pid namespace's (and the namespace dies with the agent anyway).
    agent = lost_mesh.start_agent(
        "n1", lost_mesh.invite("--sandbox", "permissive"), "--isolation", "none"
    )
    pids_file = lost_mesh.workspace("n1") / "pids"
    since = boot_ticks_now()
    # The process group fallback cannot hold a process that leaves the group (documented).
    script = FAMILY.format(escapes=ESCAPES if containment == "auto" else "")
    expected = 7 if containment == "auto" else 5
    task_id = cli_json("tasks", "submit", "n1", "--script", script)["id"]
    wait_until(lambda: len(ran_lines(pids_file)) >= expected, 15, "the task's family to start")
    pids = [int(p) for p in ran_lines(pids_file)]
    assert all(alive(pid, since) for pid in pids)
    # Both runs log to one file, and the first may have connected more than once.
    connected = agent.log().count("connected to hub")
    agent.kill()
    leader = pids[0]
    wait_until(lambda: not alive(leader, since), 10, "the leader to die with the agent")
    again = lost_mesh.start_agent("n1", None, "--isolation", "none", wait_online=False)
    # It reports in only after it killed its previous run's leftovers.
    wait_until(
        lambda: again.log().count("connected to hub") > connected, 30, "the agent to report in"
    )
    survivors = [pid for pid in pids if alive(pid, since)]
    assert survivors == [], f"{len(survivors)} of {len(pids)} processes survived"
    wait_until(lambda: state(task_id) == "failed", 10, "the journal to agree")
    error = str(show(task_id)["error"])
    assert "agent restarted" in error and "leftover" in error
    wait_until(lambda: lost_mesh.node("n1")["running_tasks"] == 0, 10, "the node to agree")


# --- no hub past the grace: the agent stops its tasks; a refused result is dropped -------


def test_with_no_hub_past_the_grace_the_agent_stops_its_task_and_drops_the_refused_result(
    lost_mesh: Mesh,
) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the task's processes are read from /proc")
    agent = lost_mesh.start_agent(
        "n1", lost_mesh.invite("--sandbox", "permissive"), "--isolation", "none"
    )
    results = lost_mesh.root / "agents" / "n1" / "state" / "results"
    pids_file = lost_mesh.workspace("n1") / "pids"
    since = boot_ticks_now()
    task_id = cli_json("tasks", "submit", "n1", "--script", FAMILY.format(escapes=""))["id"]
    wait_until(lambda: len(ran_lines(pids_file)) >= 5, 15, "the task's family to start")
    pids = [int(p) for p in ran_lines(pids_file)]
    lost_mesh.hub.kill()
    wait_until(lambda: "stream ended with 1 task(s)" in agent.log(), 20, "the agent to see it")
    assert all(alive(pid, since) for pid in pids)  # within the grace the task goes on
    wait_until(
        lambda: "no hub within the 10s grace" in agent.log(), 30, "the agent's grace to pass"
    )
    wait_until(
        lambda: not any(alive(pid, since) for pid in pids), 15, "the task's processes to end"
    )
    # The agent keeps the result on disk once it has reaped the family (a moment later).
    wait_until(
        lambda: results.is_dir() and [p.name for p in results.iterdir()] == [f"{task_id}.pb"],
        10,
        "the agent to keep its unacknowledged result",
    )
    # Held back while the restarted hub's own grace passes: the hub fails the task first,
    # so the agent's late result is refused (accepted=false) when it comes back.
    agent.signal(signal.SIGSTOP)
    try:
        lost_mesh.hub.start()
        wait_until(lambda: state(task_id) == "failed", 40, "the restarted hub's grace to pass")
    finally:
        agent.signal(signal.SIGCONT)
    wait_until(lambda: "hub did not accept the result of task" in agent.log(), 30, "the refusal")
    wait_until(lambda: list(results.iterdir()) == [], 10, "the refused result to be dropped")
    error = str(show(task_id)["error"])
    assert state(task_id) == "failed"
    assert "restarted while the task was in flight" in error and "10s grace" in error, error
    wait_until(lambda: lost_mesh.node("n1")["online"], 20, "n1 to be back")
    wait_until(lambda: lost_mesh.node("n1")["running_tasks"] == 0, 10, "the node to agree")
    assert agent.log().count("hub did not accept") == 1  # dropped, not sent again


# --- a store that vanishes, a disk that fills ---------------------------------------------


def sqlite_only(database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("a SQLite file is what this test takes away")


def test_removed_sqlite_file_stops_the_hub_with_a_clear_message(
    lost_mesh: Mesh, database_url: str, data_dir: Path
) -> None:
    sqlite_only(database_url)
    (data_dir / "cortex.db").unlink()
    hub = lost_mesh.hub.proc
    assert hub is not None
    code = hub.wait(30)
    assert code == 4  # unavailable
    log = lost_mesh.hub.log()
    assert "cortex.db was removed" in log and "while the hub was running" in log
    assert "stopped serving" in log
    # No CLI command makes a new, empty store in its place: a read command says so.
    store_file = data_dir / "cortex.db"
    for command in (["nodes", "list"], ["tasks", "list"], ["mesh", "status"]):
        result = run_cli(*command)
        assert result.exit_code == 4, (command, result.stdout, result.stderr)
        assert result.stderr.startswith(f"error: no store at {store_file} — "), result.stderr
    assert not store_file.exists()


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[None]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if os.environ.get("CI"):
            pytest.fail("the full-disk test needs root and mount in CI")
        pytest.skip("the full-disk test needs root and mount")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)


class KeepFull:
    """Keeps a file system full with one plain file: whatever room appears (the hub's
    ballast released, a file removed) is taken again at once, until ``stop``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stopped = threading.Event()
        fill(path)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            while not self.stopped.wait(0.02):
                with contextlib.suppress(OSError):
                    while os.write(fd, b"\0" * 4096):
                        pass
        finally:
            os.close(fd)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(10)
        self.path.unlink()


def test_disk_full_during_results_loses_none_and_tasks_wait_returns(
    tmp_path: Path, store_env: dict[str, str], isolated_env: Path, database_url: str
) -> None:
    sqlite_only(database_url)
    data_dir = Path(store_env["CORTEX_DATA_DIR"])
    with small_tmpfs(data_dir, "24m"), make_mesh(tmp_path, store_env, isolated_env) as mesh:
        mesh.start_agent("n1", mesh.invite("--sandbox", "permissive"))
        # Big outputs, so their commits need pages the full disk does not have.
        script = "head -c 600000 /dev/zero | tr '\\0' x; sleep 4"
        ids = [cli_json("tasks", "submit", "n1", "--script", script)["id"] for _ in range(6)]
        wait_until(lambda: all(state(t) == "running" for t in ids), 15, "the tasks to run")
        waiter = subprocess.Popen(
            [*CORTEXCTL, "tasks", "wait", ids[-1], "--json"],
            env=mesh.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # Full, and kept full: the room of the hub's ballast is taken too, so results
        # meet a disk with no room at all.
        filler = KeepFull(data_dir / "filler")
        try:
            wait_until(
                lambda: "recording task results failed" in mesh.hub.log(),
                20,
                "results to meet the full disk",
            )
            # Nothing failed meanwhile (a result recorded before the disk filled is fine).
            assert {state(t) for t in ids} <= {"running", "succeeded"}
            time.sleep(2.0)  # the fault: the disk stays full a little longer
        finally:
            filler.stop()
        for task_id in ids:
            wait_until(lambda t=task_id: state(t) in TERMINAL, 30, f"task {task_id} to end")
            task = show(task_id)
            assert task["state"] == "succeeded", task
            assert len(str(task["stdout"])) == 600000
        assert waiter.wait(30) == 0
        log = mesh.hub.log()
        assert "disconnected" not in log  # the stream stayed up throughout
        assert "works again after" in log
        # Periodic writes that failed were logged once per condition, not once per run.
        assert log.count("maintenance job presence_flush failed") <= 2
        assert "Traceback" not in log


def lease_expires(hub_id: str) -> datetime:
    hub = next(h for h in cli_json("hubs", "list") if h["id"] == hub_id)
    assert hub["state"] == "live", hub
    return datetime.fromisoformat(str(hub["lease_expires_at"]))


def test_a_disk_filled_by_another_file_keeps_nodes_online_and_the_lease_renewed(
    tmp_path: Path, store_env: dict[str, str], isolated_env: Path, database_url: str
) -> None:
    sqlite_only(database_url)
    data_dir = Path(store_env["CORTEX_DATA_DIR"])
    with small_tmpfs(data_dir, "24m"), make_mesh(tmp_path, store_env, isolated_env) as mesh:
        ballast = data_dir / "cortex.db.ballast"
        assert ballast.stat().st_blocks * 512 >= 8 * 1024 * 1024  # put at start, real blocks
        mesh.start_agent("n1", mesh.invite("--sandbox", "permissive"))
        wait_until(lambda: mesh.node("n1")["status"] == "online", 20, "n1 to be online")
        filler = data_dir / "filler"
        lease_s = 15.0  # hub.lease, renewed every third of it
        filled_at = datetime.now(UTC)
        fill(filler)  # one plain file takes every free block: not an upload, no reserve
        try:
            seen: list[str] = []

            def renewed_while_full() -> bool:
                seen.append(str(mesh.node("n1")["status"]))
                # Renewed after the disk filled: it expires a whole lease after that.
                return lease_expires(mesh.hub.hub_id) > filled_at + timedelta(seconds=lease_s)

            wait_until(renewed_while_full, 30, "the hub to renew its lease on the full disk")
            wait_until(
                lambda: "released its 8 MiB ballast" in mesh.hub.log(),
                30,
                "the store to meet the full disk and release the ballast",
            )
            assert not ballast.exists()
            # Presence is still written: n1 was never offline, and is online after all this.
            wait_until(
                lambda: seen.append(str(mesh.node("n1")["status"])) or seen[-1] == "online",
                20,
                "n1 to be seen online on the full disk",
            )
            assert "offline" not in seen, seen
            assert lease_expires(mesh.hub.hub_id) > datetime.now(UTC)
        finally:
            filler.unlink()
        wait_until(lambda: "put back its 8 MiB ballast" in mesh.hub.log(), 30, "the ballast back")
        assert ballast.stat().st_blocks * 512 >= 8 * 1024 * 1024
        assert mesh.node("n1")["status"] == "online"
        log = mesh.hub.log()
        assert "disconnected" not in log and "Traceback" not in log
