"""Results pushed, output live: WatchTask, WaitTask and `tasks logs -f` on a real hub with
real agents, on SQLite and PostgreSQL. The hub's poll interval is 60 s, so whatever meets a
deadline far below it was pushed. Tasks are gated on a file the test touches."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cortexctl.client import Hub, Task, TaskResult
from cortexctl.core import features
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from tests.conftest import wait_until
from tests.helpers import CORTEXCTL, Mesh, cli_json, running_mesh, slow_poll_env
from tests.helpers import Hub as HubProc
from tests.integration.test_multihub import hub_env, use_store

pytestmark = pytest.mark.integration
CAP = 4096
# Prints "first", waits for the gate file the test touches, prints "second".
GATED = "echo first; while [ ! -e gate ]; do sleep 0.05; done; echo second"


@pytest.fixture
def slow_mesh(
    each_store: str,
    tmp_path: Path,
    data_dir: Path,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Mesh]:
    env = slow_poll_env(
        each_store, data_dir, isolated_env, monkeypatch, CORTEX_MAX_OUTPUT_BYTES=str(CAP)
    )
    with running_mesh(tmp_path, env) as mesh:
        yield mesh


def operator(address: str, name: str = "live") -> Hub:
    token = cli_json("admin-tokens", "create", "--role", "operator", "--name", name)["token"]
    return Hub.connect(address, token=str(token))


def permissive_node(mesh: Mesh, name: str = "n1") -> Path:
    mesh.start_agent(name, mesh.invite("--sandbox", "permissive"))
    return mesh.workspace(name)


def open_gate_and_wait(task: Task, gate: Path) -> None:
    """The task's live output reaches the store while it runs (dispatched and reported
    without a poll); then its result reaches WaitTask far below the 60 s poll."""
    wait_until(
        lambda: "first" in cli_json("tasks", "show", task.id)["stdout"],
        20,
        "the task's live output to be stored while it runs",
    )
    gate.touch()
    result = task.wait(timeout=20)
    assert (result.state, result.stdout) == ("succeeded", b"first\nsecond\n")


def test_watch_yields_output_before_the_end_and_wait_returns_on_the_push(
    slow_mesh: Mesh,
) -> None:
    gate = permissive_node(slow_mesh) / "gate"
    with operator(slow_mesh.hub.address) as hub:
        task = hub.submit("n1", script=GATED)
        seen: list[TaskResult] = []
        for update in task.watch():
            seen.append(update)
            if update.stdout == b"first\n" and not update.terminal:
                gate.touch()
        assert seen[-1].terminal and seen[-1].stdout == b"first\nsecond\n"
        assert any(u.stdout_chunk for u in seen), "live output came as chunks"
        assert gate.exists(), "the output reached the watcher while the task ran"
        # WaitTask: a second task, waited on far below the 60 s poll.
        gate.unlink()
        open_gate_and_wait(hub.submit("n1", script=GATED), gate)


def test_tasks_logs_follow_prints_output_before_the_task_ends(
    slow_mesh: Mesh, tmp_path: Path
) -> None:
    gate = permissive_node(slow_mesh) / "gate"
    submitted = cli_json("tasks", "submit", "n1", "--script", GATED)
    out = tmp_path / "logs.out"
    with out.open("wb") as sink:
        follow = subprocess.Popen(
            [*CORTEXCTL, "tasks", "logs", "-f", submitted["id"]],
            env=slow_mesh.env,
            stdout=sink,
            stderr=subprocess.PIPE,
        )
    try:
        wait_until(lambda: out.read_bytes() == b"first\n", 30, "`logs -f` to print the output")
        assert follow.poll() is None, "still following: the task has not ended"
        assert cli_json("tasks", "show", submitted["id"])["state"] in ("dispatched", "running")
        gate.touch()
        assert follow.wait(30) == 0
        assert out.read_bytes() == b"first\nsecond\n"
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()


def test_live_output_stays_within_the_output_cap(slow_mesh: Mesh) -> None:
    gate = permissive_node(slow_mesh) / "gate"
    script = (
        f"head -c {3 * CAP} /dev/zero | tr '\\0' a; "
        "while [ ! -e gate ]; do sleep 0.05; done; echo after"
    )
    with operator(slow_mesh.hub.address) as hub:
        task = hub.submit("n1", script=script)
        longest = 0
        for update in task.watch():
            longest = max(longest, len(update.stdout))
            assert len(update.stdout) <= CAP
            if update.stdout == b"a" * CAP and not update.terminal:
                wait_until(
                    lambda: len(cli_json("tasks", "show", task.id)["stdout"]) == CAP,
                    20,
                    "the capped live output to be stored",
                )
                gate.touch()
        assert longest == CAP
        result = task.result()
        assert (result.state, result.stdout, result.output_truncated) == (
            "succeeded",
            b"a" * CAP,
            True,
        )


class OldStyleNode:
    """A node client that speaks the base protocol only: it never sends TaskOutput."""

    def __init__(self, address: str, token: str) -> None:
        self.address, self.token = address, token
        self.hub_features: list[str] = []

    async def serve(self, ready: asyncio.Event) -> None:
        """Until cancelled: answer each task at once (no result.ack: no acks either)."""
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = pb_grpc.AgentOrchestratorStub(channel)  # type: ignore[no-untyped-call]
            config = await stub.SyncConfiguration(
                pb.SyncConfigurationRequest(
                    hostname="old",
                    requested_name="old",
                    invite_token=self.token,
                    capabilities=["tasks", *features.POLICY_FEATURES],
                ),
                timeout=30,
            )
            self.hub_features = list(config.hub_features)
            outbox: asyncio.Queue[pb.NodeMessage] = asyncio.Queue()

            async def messages() -> Any:
                while True:
                    yield await outbox.get()

            async def heartbeats() -> None:
                for seq in range(1, 1_000_000):
                    outbox.put_nowait(pb.NodeMessage(heartbeat=pb.Heartbeat(seq=seq)))
                    await asyncio.sleep(0.3)  # the interval it was told is 1 s

            beating = asyncio.create_task(heartbeats())
            call = stub.TaskStream(
                messages(), metadata=[("authorization", f"Bearer {config.node_credential}")]
            )
            try:
                await self._answer(call, outbox, ready)
            finally:
                beating.cancel()
                call.cancel()

    @staticmethod
    async def _answer(
        call: Any, outbox: asyncio.Queue[pb.NodeMessage], ready: asyncio.Event
    ) -> None:
        async for message in call:
            kind = message.WhichOneof("body")
            if kind == "policy":
                ready.set()
            elif kind == "assign":
                task_id = message.assign.task_id
                outbox.put_nowait(
                    pb.NodeMessage(task_update=pb.TaskUpdate(task_id=task_id, state=pb.RUNNING))
                )
                outbox.put_nowait(
                    pb.NodeMessage(
                        task_update=pb.TaskUpdate(
                            task_id=task_id, state=pb.SUCCEEDED, exit_code=0, stdout=b"old\n"
                        )
                    )
                )


def test_an_old_style_node_that_never_sends_task_output_still_works(slow_mesh: Mesh) -> None:
    node = OldStyleNode(slow_mesh.hub.address, slow_mesh.invite("--sandbox", "permissive"))
    with operator(slow_mesh.hub.address) as hub:

        async def run() -> list[TaskResult]:
            ready = asyncio.Event()
            serving = asyncio.create_task(node.serve(ready))
            await asyncio.wait_for(ready.wait(), 30)
            first = await asyncio.to_thread(hub.submit, "old", ["true"])
            watched = await asyncio.to_thread(lambda: list(first.watch()))
            second = await asyncio.to_thread(hub.submit, "old", ["true"])
            waited = await asyncio.to_thread(second.wait, 20)
            serving.cancel()
            return [*watched, waited]

        updates = asyncio.run(run())
    assert features.TASK_OUTPUT in node.hub_features
    assert updates[-2].terminal and updates[-2].stdout == b"old\n"
    assert (updates[-1].state, updates[-1].stdout) == ("succeeded", b"old\n")


def test_wait_through_one_hub_returns_on_a_result_recorded_by_another(
    pg_url: str, tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_store(monkeypatch, pg_url, tmp_path / "cli")
    hubs = []
    for name in ("a", "b"):
        env = hub_env(pg_url, tmp_path / name / "data", isolated_env)
        env["CORTEX_POLL_INTERVAL"] = "60s"
        hub = HubProc(tmp_path / name, env)
        hub.workdir.mkdir(parents=True)
        hubs.append(hub.start())
    a, b = hubs
    mesh = Mesh(tmp_path, b.env, b)  # the node is on hub B
    try:
        gate = permissive_node(mesh) / "gate"
        with operator(a.address) as via_a:
            task = via_a.submit("n1", script=GATED)
            open_gate_and_wait(task, gate)
        assert cli_json("tasks", "show", task.id)["hub_id"] == b.hub_id
    finally:
        mesh.close()
        a.stop()
