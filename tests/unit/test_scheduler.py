"""Maintenance jobs in isolation: no gRPC server, just the scheduler and its jobs."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from cortexctl.hub.scheduler import Job, Scheduler


def test_a_failing_job_is_logged_and_retried_and_others_keep_running(caplog: Any) -> None:
    calls = {"bad": 0, "good": 0}
    recorded: list[tuple[str, str]] = []

    async def bad() -> dict[str, Any]:
        calls["bad"] += 1
        raise RuntimeError("disk on fire")

    async def good() -> dict[str, Any]:
        calls["good"] += 1
        return {"removed": calls["good"]}

    async def record(status: Any) -> None:
        recorded.append((status.name, status.last_outcome))

    async def scenario() -> Scheduler:
        scheduler = Scheduler(
            [Job("bad", 0.01, bad, run_at_start=True), Job("good", 0.01, good, run_at_start=True)],
            recorder=record,
        )
        scheduler.start()
        while calls["bad"] < 3 or calls["good"] < 3:
            await asyncio.sleep(0.01)
        await scheduler.stop()
        return scheduler

    scheduler = asyncio.run(scenario())
    statuses = {s.name: s for s in scheduler.status()}
    assert statuses["bad"].failures == statuses["bad"].runs >= 3
    assert statuses["bad"].last_error == "RuntimeError: disk on fire"
    assert statuses["good"].failures == 0 and statuses["good"].last_outcome == "ok"
    assert statuses["good"].last_result["removed"] >= 3
    assert ("bad", "failed") in recorded and ("good", "ok") in recorded
    assert "maintenance job bad failed" in caplog.text
    assert "Traceback" in caplog.text


def test_a_slow_job_does_not_hold_up_the_event_loop() -> None:
    release = threading.Event()
    ticks = 0

    async def slow() -> dict[str, Any]:
        # Jobs do their blocking work in a thread (the hub's store executor).
        await asyncio.to_thread(release.wait, 30)
        return {}

    async def scenario() -> None:
        nonlocal ticks
        scheduler = Scheduler([Job("slow", 60, slow, run_at_start=True)])
        scheduler.start()
        for _ in range(20):  # the loop keeps turning while the job is still running
            await asyncio.sleep(0.01)
            ticks += 1
        assert scheduler.statuses["slow"].runs == 0
        release.set()
        while scheduler.statuses["slow"].runs == 0:
            await asyncio.sleep(0.01)
        await scheduler.stop()

    asyncio.run(scenario())
    assert ticks == 20


def test_run_once_runs_a_job_now() -> None:
    async def job() -> dict[str, Any]:
        return {"n": 1}

    async def scenario() -> Any:
        scheduler = Scheduler([Job("j", 3600, job)])
        return await scheduler.run_once("j")

    status = asyncio.run(scenario())
    assert (status.runs, status.last_outcome, status.last_result) == (1, "ok", {"n": 1})


def test_a_frequent_job_is_recorded_every_second_so_mesh_status_jobs_is_current(
    monkeypatch: Any,
) -> None:
    """`mesh status --jobs` reads what the recorder wrote: at most a second behind."""
    from cortexctl.hub import scheduler as module

    clock = [1000.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: clock[0])
    recorded: list[int] = []

    async def job() -> dict[str, Any]:
        return {}

    async def record(status: Any) -> None:
        recorded.append(status.runs)

    async def scenario() -> None:
        scheduler = Scheduler([Job("presence_flush", 1.0, job)], recorder=record)
        for _ in range(5):
            await scheduler.run_once("presence_flush")
            clock[0] += 1.0
        clock[0] -= 0.5
        await scheduler.run_once("presence_flush")  # half a second after the last: not yet

    asyncio.run(scenario())
    assert recorded == [1, 2, 3, 4, 5]
