"""Load generators: each runs in its own process (multiprocessing, spawn), never in the
process of the server it loads.

A worker gets its arguments, a progress queue and a stop event, and returns one dict of
samples. Latency is measured from each request's scheduled send time, so a server that
falls behind shows as latency instead of slowing the load (no coordinated omission).
Server CPU is read from outside with psutil (``cpu_of``) at the boundaries a worker knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from cortexctl.core import features
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc

# One TCP connection per simulated node, as real nodes have: without a local subchannel
# pool, channels with equal arguments share one connection.
NODE_CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
MIB = 1024 * 1024


def cpu_of(pid: int) -> tuple[float, int]:
    """(user+system CPU seconds, RSS bytes) of process ``pid`` and its children (the hub
    processes of `serve --processes N`), read from outside."""
    import psutil

    root = psutil.Process(pid)
    cpu, rss = 0.0, 0
    for proc in (root, *root.children(recursive=True)):
        try:
            times = proc.cpu_times()
            cpu += times.user + times.system
            rss += int(proc.memory_info().rss)
        except psutil.NoSuchProcess:
            continue  # gone between the listing and the read
    return cpu, rss


def _sleep_until_wall(at: float) -> float:
    """Seconds to sleep until wall-clock time ``at`` (shared by every worker process)."""
    return max(0.0, at - time.time())


# --- running workers ------------------------------------------------------------------------


Worker = Callable[[dict[str, Any], Any, Any], dict[str, Any]]


def _entry(target: Worker, args: dict[str, Any], results: Any, events: Any, stop: Any) -> None:
    try:
        results.put(("ok", target(args, events, stop)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        results.put(("error", traceback.format_exc()))


@dataclass
class Workers:
    """Load worker processes started together; ``results()`` waits for all of them."""

    procs: list[Any]
    results_queue: Any
    events: Any
    stop: Any

    def event(self, timeout: float) -> Any:
        """The next progress event a worker sent, or None after ``timeout``."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def results(self, timeout: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        try:
            while len(out) < len(self.procs):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError(f"a load worker did not finish within {timeout:g}s")
                try:
                    kind, value = self.results_queue.get(timeout=min(remaining, 1.0))
                except queue.Empty:
                    if not any(p.is_alive() for p in self.procs) and self.results_queue.empty():
                        raise RuntimeError("a load worker died without a result") from None
                    continue
                if kind == "error":
                    raise RuntimeError(f"a load worker failed:\n{value}")
                out.append(value)
            return out
        finally:
            self.close()

    def close(self) -> None:
        self.stop.set()
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def start_workers(target: Worker, arg_list: list[dict[str, Any]]) -> Workers:
    ctx = multiprocessing.get_context("spawn")
    results, events, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_entry, args=(target, args, results, events, stop), daemon=True)
        for args in arg_list
    ]
    for proc in procs:
        proc.start()
    return Workers(procs, results, events, stop)


def split(items: list[Any], parts: int) -> list[list[Any]]:
    parts = max(1, min(parts, len(items)))
    return [items[index::parts] for index in range(parts)]


# --- joins and rejoins --------------------------------------------------------------------


def join_worker(args: dict[str, Any], events: Any, stop: Any) -> dict[str, Any]:
    """Joins (or rejoins with ``credentials``) ``in_flight`` at a time on one connection."""
    return asyncio.run(_joins(args))


async def _joins(args: dict[str, Any]) -> dict[str, Any]:
    names: list[str] = args["names"]
    credentials: dict[str, str] = args.get("credentials") or {}
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    joined: list[tuple[str, str, str]] = []
    todo = iter(names)
    async with grpc.aio.insecure_channel(args["address"]) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)  # type: ignore[no-untyped-call]
        await channel.channel_ready()

        async def lane() -> None:
            for name in todo:
                request = pb.SyncConfigurationRequest(
                    requested_name=name,
                    hostname=name,
                    agent_version="bench",
                    # A simulated node runs nothing, so every limit of its policy holds.
                    capabilities=[features.POLICY_RLIMITS, features.POLICY_NETWORK],
                )
                if name in credentials:
                    request.node_credential = credentials[name]
                else:
                    request.invite_token = args["token"]
                # Closed loop (each lane sends when its last answer came): the send time
                # is the scheduled time.
                began = time.perf_counter()
                try:
                    config = await stub.SyncConfiguration(request, timeout=30)
                except grpc.aio.AioRpcError as err:
                    errors[err.code().name] += 1
                    continue
                latencies.append((time.perf_counter() - began) * 1000)
                joined.append((name, config.node_id, config.node_credential))

        await asyncio.sleep(_sleep_until_wall(args["start_at"]))
        cpu_start = cpu_of(args["pid"])[0] if args.get("meter") else None
        began_wall = time.time()
        await asyncio.gather(*(lane() for _ in range(args["in_flight"])))
        ended_wall = time.time()
        cpu_end = cpu_of(args["pid"])[0]
    return {
        "latencies_ms": latencies,
        "errors": dict(errors),
        "joined": joined,
        "began": began_wall,
        "ended": ended_wall,
        "cpu_start": cpu_start,
        "cpu_end": cpu_end,
    }


# --- streams (steady heartbeats, dispatch) and the storm -------------------------------------


def stream_worker(args: dict[str, Any], events: Any, stop: Any) -> dict[str, Any]:
    """Each node keeps a TaskStream on its own connection and heartbeats on a schedule.

    Assigned tasks are answered SUCCEEDED at once (their arrival times are returned). A
    ``ready`` event goes to the parent once every stream has its first policy.
    """
    return asyncio.run(_streams(args, events, stop))


async def _streams(args: dict[str, Any], events: Any, stop: Any) -> dict[str, Any]:
    nodes: list[tuple[str, str]] = args["nodes"]
    interval: float = args["interval"]
    start_at: float = args["start_at"]
    window = (args.get("measure_from", 0.0), args.get("measure_until", float("inf")))
    stop_at: float = args.get("stop_at") or float("inf")
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    assigned: dict[str, float] = {}
    with_policy = 0
    all_policies = asyncio.Event()
    finished = asyncio.Event()
    # perf_counter time of a wall-clock instant, so schedules are shared across processes
    offset = time.perf_counter() - time.time()

    async def node(credential: str) -> None:
        nonlocal with_policy
        channel = grpc.aio.insecure_channel(args["address"], options=NODE_CHANNEL_OPTIONS)
        stub = pb_grpc.AgentOrchestratorStub(channel)  # type: ignore[no-untyped-call]
        phase = random.uniform(0, interval)
        first = start_at + offset + phase
        await asyncio.sleep(max(0.0, first - time.perf_counter()))
        call = stub.TaskStream(metadata=[("authorization", f"Bearer {credential}")])
        sent: dict[int, float] = {}
        got_policy = False

        async def read() -> None:
            nonlocal got_policy, with_policy
            async for message in call:
                kind = message.WhichOneof("body")
                if kind == "heartbeat_ack":
                    scheduled = sent.pop(message.heartbeat_ack.seq, None)
                    if scheduled is None or message.heartbeat_ack.seq == 1:
                        continue  # the first includes the stream's set-up
                    wall = scheduled - offset
                    if window[0] <= wall < window[1]:
                        latencies.append((time.perf_counter() - scheduled) * 1000)
                elif kind == "policy" and not got_policy:
                    got_policy = True
                    with_policy += 1
                    if with_policy == len(nodes):
                        all_policies.set()
                elif kind == "assign":
                    assigned[message.assign.task_id] = time.time()
                    await call.write(
                        pb.NodeMessage(
                            task_update=pb.TaskUpdate(
                                task_id=message.assign.task_id, state=pb.SUCCEEDED, exit_code=0
                            )
                        )
                    )

        reader = asyncio.create_task(read())
        seq = 0
        try:
            while not finished.is_set():
                seq += 1
                scheduled = first + (seq - 1) * interval
                if scheduled - offset >= stop_at:
                    break
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(finished.wait(), delay)
                    if finished.is_set():
                        break
                sent[seq] = scheduled
                await call.write(pb.NodeMessage(heartbeat=pb.Heartbeat(seq=seq)))
            await call.done_writing()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, 10)
        except grpc.aio.AioRpcError as err:
            errors[err.code().name] += 1
        except asyncio.InvalidStateError:
            errors["CLOSED"] += 1
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            await channel.close()

    async def watch_stop() -> None:
        while not stop.is_set() and time.time() < stop_at:
            await asyncio.sleep(0.05)
        finished.set()

    async def announce() -> None:
        await all_policies.wait()
        events.put(("ready", len(nodes)))

    watcher = asyncio.create_task(watch_stop())
    announcer = asyncio.create_task(announce())
    await asyncio.gather(*(node(credential) for _, credential in nodes))
    watcher.cancel()
    announcer.cancel()
    return {
        "latencies_ms": latencies,
        "errors": dict(errors),
        "assigned": assigned,
        "with_policy": with_policy,
    }


def storm_worker(args: dict[str, Any], events: Any, stop: Any) -> dict[str, Any]:
    """Every node opens its stream at ``start_at``: time until its first policy."""
    return asyncio.run(_storm(args, stop))


async def _storm(args: dict[str, Any], stop: Any) -> dict[str, Any]:
    nodes: list[tuple[str, str]] = args["nodes"]
    channels = [
        grpc.aio.insecure_channel(args["address"], options=NODE_CHANNEL_OPTIONS) for _ in nodes
    ]
    # Connections first (a restarted hub's nodes reconnect too, but the storm measured
    # here is of stream opens).
    await asyncio.gather(*(channel.channel_ready() for channel in channels))
    to_policy: list[float] = []
    refused: Counter[str] = Counter()
    calls: list[Any] = []
    offset = time.perf_counter() - time.time()
    start = args["start_at"] + offset

    async def node(channel: Any, credential: str) -> None:
        stub = pb_grpc.AgentOrchestratorStub(channel)  # type: ignore[no-untyped-call]
        call = stub.TaskStream(metadata=[("authorization", f"Bearer {credential}")])
        calls.append(call)
        try:
            async for message in call:
                if message.WhichOneof("body") == "policy":
                    to_policy.append((time.perf_counter() - start) * 1000)
                    return
            refused["CLOSED"] += 1
        except grpc.aio.AioRpcError as err:
            refused[f"{err.code().name}: {err.details()}"[:120]] += 1

    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    cpu_start = cpu_of(args["pid"])[0]
    await asyncio.wait_for(
        asyncio.gather(*(node(ch, cred) for ch, (_, cred) in zip(channels, nodes, strict=True))),
        args["timeout"],
    )
    cpu_end = cpu_of(args["pid"])[0]
    for call in calls:
        call.cancel()
    await asyncio.gather(*(channel.close() for channel in channels))
    return {
        "to_policy_ms": to_policy,
        "refused": dict(refused),
        "cpu_start": cpu_start,
        "cpu_end": cpu_end,
        "ended": time.time(),
    }


# --- uploads ------------------------------------------------------------------------------


def upload_worker(args: dict[str, Any], events: Any, stop: Any) -> dict[str, Any]:
    """Uploads ``paths`` of ``workspace`` ``parallel`` at a time, as the agent does."""
    from cortexctl.tuning import tune_malloc

    tune_malloc(MIB)  # the agent tunes malloc the same way
    return asyncio.run(_upload(args))


async def _upload(args: dict[str, Any]) -> dict[str, Any]:
    from cortexctl.agent.syncer import upload_many

    options = [("grpc.max_send_message_length", 64 * MIB)]
    async with grpc.aio.insecure_channel(args["address"], options=options) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)  # type: ignore[no-untyped-call]
        await channel.channel_ready()
        config = pb.NodeConfiguration(max_chunk_bytes=args["chunk"], max_file_bytes=1024**3 * 4)
        cpu_start = cpu_of(args["pid"])[0]
        began = time.perf_counter()
        outcomes = await upload_many(
            stub,
            args["credential"],
            Path(args["workspace"]),
            args["paths"],
            config,
            parallel=args["parallel"],
        )
        elapsed = time.perf_counter() - began
        cpu_end = cpu_of(args["pid"])[0]
    failed = [str(outcome)[:200] for _, outcome in outcomes if isinstance(outcome, BaseException)]
    size = sum(os.path.getsize(Path(args["workspace"]) / rel) for rel in args["paths"])
    return {
        "elapsed_s": elapsed,
        "bytes": size,
        "files": len(outcomes) - len(failed),
        "failed": failed[:5],
        "cpu_s": cpu_end - cpu_start,
    }
