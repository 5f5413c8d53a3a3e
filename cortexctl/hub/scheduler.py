"""The maintenance scheduler: periodic jobs, apart from the servicers.

Each job is an async callable returning a small dict of what it did. A job that raises is
logged with its traceback and tried again at its next interval; it never stops the server
or another job. Every run's outcome is kept in memory (``status()``) and handed to an
optional recorder (the hub writes it to the store for `cortexctl mesh status --jobs`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cortexctl.core import clock
from cortexctl.errors import CortexError
from cortexctl.hub.stalls import ConditionLog

log = logging.getLogger("cortexctl.jobs")
# A job that runs every second is written to the store at most this often (or on a change),
# so `mesh status --jobs` is at most a second behind.
RECORD_EVERY_S = 1.0

JobFn = Callable[[], Awaitable[dict[str, Any] | None]]


@dataclass
class JobStatus:
    name: str
    interval_s: float
    runs: int = 0
    failures: int = 0
    last_started_at: datetime | None = None
    last_duration_s: float | None = None
    last_outcome: str = "never"  # never | ok | failed
    last_error: str = ""
    last_result: dict[str, Any] = field(default_factory=dict)
    next_run_at: datetime | None = None


@dataclass
class Job:
    name: str
    interval_s: float
    fn: JobFn
    run_at_start: bool = False
    record: bool = True  # whether runs are reported to the recorder


Recorder = Callable[[JobStatus], Awaitable[None]]


class Scheduler:
    def __init__(self, jobs: list[Job], recorder: Recorder | None = None) -> None:
        self.jobs = {job.name: job for job in jobs}
        self.statuses = {job.name: JobStatus(job.name, job.interval_s) for job in jobs}
        self.recorder = recorder
        self._tasks: list[asyncio.Task[None]] = []
        self._recorded: dict[str, tuple[float, str]] = {}  # job -> (when, outcome) recorded
        self._record_failures = ConditionLog(log, "recording maintenance job runs")
        self._conditions = {
            job.name: ConditionLog(log, f"maintenance job {job.name}") for job in jobs
        }

    def start(self) -> None:
        for job in self.jobs.values():
            self._tasks.append(asyncio.create_task(self._loop(job), name=f"job-{job.name}"))

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let running jobs finish within the grace period, then cancel them."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace_s)
        self._tasks.clear()

    async def run_once(self, name: str) -> JobStatus:
        """Run one job now (tests, and operators through the hub)."""
        await self._run(self.jobs[name])
        return self.statuses[name]

    async def _loop(self, job: Job) -> None:
        status = self.statuses[job.name]
        if not job.run_at_start:
            status.next_run_at = clock.now() + timedelta(seconds=job.interval_s)
            await asyncio.sleep(job.interval_s)
        while True:
            started = time.monotonic()
            await self._run(job)
            delay = max(0.0, job.interval_s - (time.monotonic() - started))
            status.next_run_at = clock.now() + timedelta(seconds=delay)
            await asyncio.sleep(delay)

    async def _run(self, job: Job) -> None:
        status = self.statuses[job.name]
        status.last_started_at = clock.now()
        started = time.monotonic()
        try:
            result = await job.fn()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            status.failures += 1
            status.last_outcome = "failed"
            status.last_error = f"{type(err).__name__}: {err}"
            # A condition (a full disk, a store away) repeats every run: log it once, with
            # a count when it changes or clears, and a traceback only for the unexpected.
            self._conditions[job.name].failed(
                f"{status.last_error}; it runs again every {job.interval_s:g}s",
                traceback=not isinstance(err, CortexError),
            )
        else:
            self._conditions[job.name].ok()
            status.last_outcome = "ok"
            status.last_error = ""
            status.last_result = dict(result or {})
            if any(result.values() if result else ()):
                log.info("maintenance job %s: %s", job.name, status.last_result)
        status.runs += 1
        status.last_duration_s = time.monotonic() - started
        status.next_run_at = clock.now() + timedelta(seconds=job.interval_s)
        if self.recorder is not None and job.record and self._worth_recording(status):
            try:
                await self.recorder(status)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._record_failures.failed(f"{type(err).__name__}: {err}")
            else:
                self._record_failures.ok()

    def _worth_recording(self, status: JobStatus) -> bool:
        """Record a change of outcome at once, frequent runs at most every RECORD_EVERY_S."""
        now = time.monotonic()
        last = self._recorded.get(status.name)
        if last is not None and last[1] == status.last_outcome and now - last[0] < RECORD_EVERY_S:
            return False
        self._recorded[status.name] = (now, status.last_outcome)
        return True

    def status(self) -> list[JobStatus]:
        return list(self.statuses.values())
