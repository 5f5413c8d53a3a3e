"""`cortexctl bench`: measure a hub with simulated nodes over real loopback gRPC.

Simulated nodes join with invites (handshakes/s), keep TaskStreams open with heartbeats
(ack round trip), and answer every assigned task at once, so the task round trip —
submitted through the store, dispatched by the hub, reported back, recorded — is the
hub's own cost. The hub under test is a real `cortexctl serve` process on a throwaway
SQLite store unless an address and store are given.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from cortexctl.bench.launcher import start_hub
from cortexctl.core import features, invites, journal, nodes
from cortexctl.core.sandbox import SandboxDefaults
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from cortexctl.store.engine import Store, upgrade


@dataclass
class BenchResult:
    nodes: int
    handshakes_per_s: float
    handshake_retries: int  # UNAVAILABLE answers retried with backoff, as agents do
    heartbeat_ack_ms: dict[str, float]  # steady state: each stream's first ack left out
    first_heartbeat_ack_ms: dict[str, float]  # includes the stream's set-up
    heartbeats_acked: int
    tasks: int
    task_round_trip_ms: dict[str, float]
    tasks_per_s: float
    hub_rss_mib: float | None
    notes: list[str] = field(default_factory=list)


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered), 3),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "max": round(ordered[-1], 3),
    }


@contextmanager
def local_hub(heartbeat: str) -> Iterator[tuple[str, str, int]]:
    """A `cortexctl serve` on a throwaway data dir: (address, database url, pid)."""
    with tempfile.TemporaryDirectory(prefix="cortex-bench-") as tmp:
        env = {**os.environ, "CORTEX_DATA_DIR": tmp}
        env.pop("CORTEX_DATABASE_URL", None)
        hub = start_hub(Path(tmp), env, "--heartbeat-interval", heartbeat, "--log-level", "warning")
        try:
            yield hub.address, f"sqlite:///{tmp}/cortex.db", hub.pid
        finally:
            hub.stop(60)


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class SimulatedNode:
    def __init__(self, stub: pb_grpc.AgentOrchestratorStub, credential: str) -> None:
        self.stub = stub
        self.credential = credential
        self.rtts: list[float] = []
        self.first_ack_ms: float | None = None  # stream set-up included; kept apart
        self.sent: dict[int, float] = {}
        self.done = asyncio.Event()

    async def run(self, interval_s: float, until: float) -> None:
        call = self.stub.TaskStream(metadata=[("authorization", f"Bearer {self.credential}")])
        reader = asyncio.create_task(self._read(call))
        seq = 0
        try:
            while time.monotonic() < until:
                seq += 1
                self.sent[seq] = time.perf_counter()
                await call.write(pb.NodeMessage(heartbeat=pb.Heartbeat(seq=seq)))
                await asyncio.sleep(interval_s)
            await call.done_writing()
            await asyncio.wait_for(reader, 30)
        finally:
            reader.cancel()

    async def _read(self, call: Any) -> None:
        async for message in call:
            kind = message.WhichOneof("body")
            if kind == "heartbeat_ack":
                sent = self.sent.pop(message.heartbeat_ack.seq, None)
                if sent is None:
                    continue
                rtt = (time.perf_counter() - sent) * 1000
                if self.first_ack_ms is None:
                    self.first_ack_ms = rtt
                else:
                    self.rtts.append(rtt)
            elif kind == "assign":
                await call.write(
                    pb.NodeMessage(
                        task_update=pb.TaskUpdate(
                            task_id=message.assign.task_id, state=pb.SUCCEEDED, exit_code=0
                        )
                    )
                )


def submit_and_wait(
    store: Store, node_ids: list[str], count: int, timeout_s: float
) -> tuple[list[float], float]:
    defaults = SandboxDefaults(mode="permissive")
    started = time.monotonic()
    submitted: dict[str, float] = {}
    for index in range(count):
        with store.session(write=True) as session:
            node = nodes.resolve_node(session, node_ids[index % len(node_ids)])
            view = journal.submit_task(session, node, argv=["true"], defaults=defaults)
        submitted[view.id] = time.monotonic()
    round_trips: list[float] = []
    deadline = time.monotonic() + timeout_s
    while submitted and time.monotonic() < deadline:
        with store.session() as session:
            ended = journal.terminal_among(session, list(submitted))
        now = time.monotonic()
        for task_id in ended:
            round_trips.append((now - submitted.pop(task_id)) * 1000)
        time.sleep(0.01)
    return round_trips, time.monotonic() - started


async def join(
    stub: pb_grpc.AgentOrchestratorStub, token: str, name: str, retries: list[int]
) -> pb.NodeConfiguration:
    """A handshake retried on UNAVAILABLE with jittered backoff, as the agent does."""
    from cortexctl.agent.runner import backoff_delay

    for attempt in range(20):
        try:
            config: pb.NodeConfiguration = await stub.SyncConfiguration(
                pb.SyncConfigurationRequest(
                    invite_token=token,
                    requested_name=name,
                    # A simulated node runs nothing, so every limit of its policy holds.
                    capabilities=[features.POLICY_RLIMITS, features.POLICY_NETWORK],
                )
            )
            return config
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            retries[0] += 1
            await asyncio.sleep(backoff_delay(attempt, 0.2, 5.0))
    raise RuntimeError(f"{name} could not join in 20 attempts")


async def simulate(
    address: str,
    database_url: str,
    node_count: int,
    duration_s: float,
    interval_s: float,
    task_count: int,
) -> tuple[float, int, list[SimulatedNode], list[float], float]:
    store = Store(database_url, pool_size=4)
    try:
        upgrade(store)
        with store.session() as session:
            token = invites.create_invite(
                session, ttl_s=3600, uses=node_count, sandbox="permissive"
            ).token
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.AgentOrchestratorStub(channel)  # type: ignore[no-untyped-call]
            began = time.perf_counter()
            retries = [0]
            configs = await asyncio.gather(
                *(join(stub, token, f"bench{i}", retries) for i in range(node_count))
            )
            handshake_s = time.perf_counter() - began
            sims = [SimulatedNode(stub, c.node_credential) for c in configs]
            until = time.monotonic() + duration_s
            running = [asyncio.create_task(s.run(interval_s, until)) for s in sims]
            await asyncio.sleep(min(1.0, duration_s / 4))
            trips, elapsed = await asyncio.to_thread(
                submit_and_wait,
                store,
                [c.node_id for c in configs],
                task_count,
                max(30.0, duration_s),
            )
            await asyncio.gather(*running)
        return node_count / handshake_s, retries[0], sims, trips, elapsed
    finally:
        store.dispose()


def run_bench(
    *,
    node_count: int,
    duration_s: float,
    interval_s: float,
    task_count: int,
    address: str | None = None,
    database_url: str | None = None,
) -> BenchResult:
    notes = []
    if address is None:
        with local_hub(f"{interval_s}s") as (hub, url, pid):
            rate, retried, sims, trips, elapsed = asyncio.run(
                simulate(hub, url, node_count, duration_s, interval_s, task_count)
            )
            rss = rss_mib(pid)
    else:
        if database_url is None:
            raise ValueError("benchmarking a running hub needs its store")
        notes.append(f"hub at {address} (its own heartbeat interval applies)")
        rate, retried, sims, trips, elapsed = asyncio.run(
            simulate(address, database_url, node_count, duration_s, interval_s, task_count)
        )
        rss = None
    rtts = [rtt for sim in sims for rtt in sim.rtts]
    firsts = [sim.first_ack_ms for sim in sims if sim.first_ack_ms is not None]
    if len(trips) < task_count:
        notes.append(f"{task_count - len(trips)} task(s) did not finish in time")
    return BenchResult(
        nodes=node_count,
        handshakes_per_s=round(rate, 1),
        handshake_retries=retried,
        heartbeat_ack_ms=percentiles(rtts),
        first_heartbeat_ack_ms=percentiles(firsts),
        heartbeats_acked=len(rtts),
        tasks=len(trips),
        task_round_trip_ms=percentiles(trips),
        tasks_per_s=round(len(trips) / elapsed, 1) if elapsed else 0.0,
        hub_rss_mib=rss,
        notes=notes,
    )
