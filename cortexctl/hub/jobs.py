"""The hub's maintenance jobs (run by `hub/scheduler.py`) and the recorder that writes each
run to the store for `mesh status --jobs`. Each job is a few lines over one core call; the
`gc ...` commands call the very same core functions."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from cortexctl.core import hubs, journal, locks, maintenance, presence, recovery
from cortexctl.core import status as core_status
from cortexctl.errors import CortexError, Fenced
from cortexctl.hub import admin
from cortexctl.hub.ballast import Ballast
from cortexctl.hub.connections import ConnectionStats, count_sockets
from cortexctl.hub.runtime import HubRuntime
from cortexctl.hub.scheduler import Job, JobStatus
from cortexctl.store.engine import Store
from cortexctl.units import format_size

log = logging.getLogger("cortexctl.hub")
# Live task output reaches the store (`tasks logs -f`, other hubs) in batches this often;
# watchers on this hub get it at once.
OUTPUT_FLUSH_S = 0.25


def core_jobs(rt: HubRuntime) -> list[Job]:
    executor = rt.executor

    async def flush_presence() -> dict[str, Any]:
        batch = rt.streams.take_presence()
        if not batch:
            return {}
        try:
            flushed = await executor.session(
                presence.flush_presence, batch, write=True, timeout=10.0
            )
        except BaseException:
            rt.streams.restore_presence(batch)
            raise
        # The safety net behind the NOTIFY: a row a newer stream claimed on another hub.
        closed = [
            gone.node_id
            for gone in flushed.superseded
            if rt.streams.superseded(gone.node_id, gone.gen, gone.hub_id) is not None
        ]
        return {"superseded": len(closed)} if closed else {}

    async def flush_output() -> dict[str, Any]:
        batch = rt.live_output.take()
        if not batch:
            return {}
        try:
            grew = await executor.session(
                journal.append_output,
                batch,
                max_output_bytes=rt.options.sandbox.max_output_bytes,
                write=True,
                timeout=10.0,
            )
        except BaseException:
            rt.live_output.unstored(batch)
            raise
        rt.live_output.stored(batch)
        return {"tasks": grew}

    async def renew_lease() -> dict[str, Any]:
        # On a full disk this fails; the scheduler logs that once per condition, not per run.
        # A hub that merely cannot renew keeps serving: it fences only once taken over.
        if rt.fenced:
            return {}  # the fence rejoins with a new epoch
        epoch = rt.epoch
        renewal = await executor.session(
            hubs.renew_hub,
            rt.hub_id,
            rt.options.lease_s,
            write=True,
            timeout=10.0,
            epoch=epoch,
            nodes_connected=len(rt.streams),
        )
        if renewal.taken_over:
            by = f"hub {renewal.recovered_by}" if renewal.recovered_by else "another process"
            rt.on_fenced(Fenced(f"its lease renewal found it taken over by {by}", epoch=epoch))
            return {"taken_over": True}
        if renewal.lapsed:
            log.warning(
                "hub %s renewed its lease after it had lapsed (nobody took over): epoch %d",
                rt.hub_id,
                renewal.epoch,
            )
            rt.epoch = renewal.epoch
        return {"epoch": renewal.epoch} if renewal.lapsed else {}

    async def sweep_dead_hubs() -> dict[str, Any]:
        if rt.fenced:
            return {}
        swept = await executor.session(
            recovery.sweep_dead_hubs, write=True, timeout=30.0, me=rt.hub_id
        )
        for dead, count in swept.items():
            log.warning(
                "recovered dead hub %s: failed %d task(s) it had in flight, released its "
                "presence and upload leases",
                dead,
                count,
            )
        return {"hubs_recovered": len(swept), "tasks_failed": sum(swept.values())}

    async def sweep_credentials() -> dict[str, Any]:
        return {"expired": rt.credentials.sweep(), "limits_forgotten": rt.auth_failures.sweep()}

    return [
        Job("presence_flush", rt.options.presence_flush_s, flush_presence),
        Job("output_flush", OUTPUT_FLUSH_S, flush_output, record=False),
        Job("hub_lease", rt.options.lease_s / 3, renew_lease, run_at_start=True),
        Job("dead_hub_sweep", min(30.0, rt.options.lease_s), sweep_dead_hubs),
        Job("credential_cache_sweep", 60.0, sweep_credentials),
        *sync_jobs(rt),
        *retention_jobs(rt),
        *admin.admin_jobs(rt),
    ]


def retention_jobs(rt: HubRuntime) -> list[Job]:
    """Spent invites and old journal rows: the same runs as `gc invites` and `gc tasks`."""
    opts, executor = rt.options, rt.executor

    async def gc_invites() -> dict[str, Any]:
        run = partial(
            maintenance.run_gc_invites, executor.store, retention_s=opts.invite_retention_s
        )
        result = await executor.run(run, timeout=600.0, what="the invite GC")
        return {"removed": result["count"], "skipped": result["skipped"]}

    async def gc_tasks() -> dict[str, Any]:
        run = partial(
            maintenance.run_gc_tasks, executor.store, older_than_s=opts.journal_retention_s
        )
        result = await executor.run(run, timeout=600.0, what="the journal GC")
        return {"removed": result["count"], "skipped": result["skipped"]}

    async def expire_tasks() -> dict[str, Any]:
        run = partial(maintenance.run_expire_tasks, executor.store)
        result = await executor.run(run, timeout=60.0, what="the task expiry")
        return {"expired": result["count"]}

    return [
        Job("invite_gc", opts.invite_gc_interval_s, gc_invites, run_at_start=True),
        Job("journal_gc", opts.journal_gc_interval_s, gc_tasks, run_at_start=True),
        Job("task_expiry", opts.task_expiry_interval_s, expire_tasks, run_at_start=True),
    ]


def sync_jobs(rt: HubRuntime) -> list[Job]:
    """Upload leases renewed while held; lock GC and mirror GC, the same runs as `gc ...`."""
    opts, executor = rt.options, rt.executor

    async def renew_sync_leases() -> dict[str, Any]:
        renewals = [
            locks.Renewal(held.node_id, held.path, held.sync_id, held.bytes_received)
            for held in rt.sync_locks.holders()
            if held.leased
        ]
        if renewals:
            await executor.session(locks.renew_leases, renewals, write=True, timeout=10.0)
        return {}

    async def gc_locks() -> dict[str, Any]:
        for held in rt.sync_locks.stale(opts.lock_ttl_s):
            log.warning("upload of %s/%s has held its lock for long", held.node_id, held.path)
        run = partial(
            maintenance.run_gc_locks,
            executor.store,
            ttl_s=opts.lock_ttl_s,
            mirrors_dir=opts.mirrors_dir,
            held=rt.sync_locks.held(),
            hub_id=rt.hub_id,
        )
        result = await executor.run(run, timeout=600.0, what="the lock GC")
        return {"expired": len(result["expired"]), "removed_files": len(result["removed_files"])}

    async def gc_mirrors() -> dict[str, Any]:
        run = partial(
            maintenance.run_gc_mirrors,
            executor.store,
            mirrors_dir=opts.mirrors_dir,
            retention_s=opts.mirror_retention_s,
            held_temp_paths=frozenset(held.temp_path for held in rt.sync_locks.holders()),
            local_hubs=rt.local_hubs,
        )
        result = await executor.run(run, timeout=3600.0, what="the mirror GC")
        return {key: result[key] for key in ("removed_files", "removed_bytes")}

    async def mirror_records() -> dict[str, Any]:
        # At start too: files on this disk from before records began get theirs at once.
        run = partial(maintenance.sync_records, executor.store, opts.mirrors_dir, rt.local_hubs)
        result = await executor.run(run, timeout=3600.0, what="the mirror records")
        return {key: result[key] for key in ("added", "removed") if result[key]}

    return [
        Job("sync_lease_renew", locks.LEASE_RENEW_S, renew_sync_leases),
        Job("lock_gc", opts.lock_gc_interval_s, gc_locks),
        Job("mirror_gc", opts.mirror_gc_interval_s, gc_mirrors),
        Job("mirror_records", opts.mirror_gc_interval_s, mirror_records, run_at_start=True),
    ]


@dataclass(frozen=True)
class FileIdentity:
    path: Path
    device: int
    inode: int


def sqlite_identity(store: Store) -> FileIdentity | None:
    """The SQLite file the hub opened (device and inode), or None for another backend."""
    from sqlalchemy.engine import make_url

    url = make_url(store.url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = Path(url.database or "").expanduser().absolute()
    info = path.stat()
    return FileIdentity(path, info.st_dev, info.st_ino)


def store_file_job(
    rt: HubRuntime, opened: FileIdentity, fail: Callable[[str], None], interval_s: float = 1.0
) -> Job:
    """Stop serving when the SQLite file is removed or replaced under the running hub: it
    would go on writing to a file nobody else can see."""

    def look() -> str:
        try:
            info = opened.path.stat()
        except FileNotFoundError:
            return "was removed"  # (a connection opened since may have made a new one)
        except OSError as err:
            return f"cannot be checked ({err.strerror})"
        if (info.st_dev, info.st_ino) != (opened.device, opened.inode):
            return "was removed or replaced by another file"
        return ""

    async def check() -> dict[str, Any]:
        problem = await rt.executor.run(look, timeout=10.0, what="the store file check")
        if problem:
            fail(
                f"the SQLite store {opened.path} {problem} while the hub was running "
                f"(it had opened inode {opened.inode}); stopped serving so that nothing is "
                "written where no one can read it; restore the file (or point --data-dir at "
                "the right one) and start the hub again"
            )
        return {}

    return Job("store_file_check", interval_s, check, record=False)


async def put_ballast(rt: HubRuntime, ballast: Ballast) -> bool:
    """At start: the store's disk ballast in place, if the disk has room for it."""
    try:
        placed = await rt.executor.run(ballast.ensure, timeout=60.0, what="the disk ballast")
    except CortexError as err:
        log.warning("%s; the hub serves without it", err)
        return False
    if not placed:
        log.warning(
            "no room for the store's %s disk ballast %s above the free-space reserve; it is "
            "put once the disk has room",
            format_size(ballast.size),
            ballast.path,
        )
    return placed


def ballast_job(rt: HubRuntime, ballast: Ballast, interval_s: float = 5.0) -> Job:
    """Put the store's disk ballast back once the disk has room again (hub/ballast.py)."""

    async def put_back() -> dict[str, Any]:
        await rt.executor.run(ballast.ensure, timeout=60.0, what="the disk ballast")
        return {}

    return Job("store_ballast", interval_s, put_back, record=False)


def connection_watch_job(rt: HubRuntime, connections: ConnectionStats) -> Job:
    """Count the hub's sockets each second (for the metrics and the connection cap)."""

    async def watch() -> dict[str, Any]:
        sockets = await rt.executor.run(count_sockets, what="the socket count")
        connections.observe(sockets)
        return {}  # (a result would be logged every second; metrics carry it)

    return Job("connection_watch", 1.0, watch, run_at_start=True, record=False)


def job_recorder(rt: HubRuntime) -> Callable[[JobStatus], Awaitable[None]]:
    """Write each job run to the store, for `cortexctl mesh status --jobs`."""

    async def record(status: JobStatus) -> None:
        view = core_status.JobStatusView(
            hub_id=rt.hub_id,
            job=status.name,
            interval_s=status.interval_s,
            last_started_at=status.last_started_at,
            last_duration_s=status.last_duration_s,
            last_outcome=status.last_outcome,
            last_error=status.last_error,
            last_result=status.last_result,
            next_run_at=status.next_run_at,
            runs=status.runs,
            failures=status.failures,
        )
        await rt.executor.session(
            core_status.record_job_run, rt.hub_id, view, write=True, timeout=10.0
        )

    return record
