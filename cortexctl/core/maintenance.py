"""The admin tasks, whole: `gc locks`, `gc mirrors`, `gc invites`, `gc tasks`.

Each run takes its store-level admin lock (a second run at the same time waits a little,
then is skipped), deletes in bounded batches with one transaction per batch, and returns a
plain dict for the caller to render. The CLI and the hub's maintenance jobs call these same
functions — the hub through its executor, since they block.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cortexctl.core import clock, hubs, invites, journal, locks, mirrors, quotas, uploads
from cortexctl.core.admin_lock import DEFAULT_WAIT_S, admin_lock
from cortexctl.errors import NotFound
from cortexctl.store.engine import Store
from cortexctl.store.models import Node, Presence

BATCH = 500
# A dry run lists instead of deleting; it still stops somewhere.
DRY_RUN_LIMIT = 100_000
# Temp files and empty folders younger than this are left alone: an upload creates its
# folder and temp file a moment before its lease reaches the store.
ORPHAN_GRACE_S = 120.0


# --- gc locks ------------------------------------------------------------------------------


def run_gc_locks(
    store: Store,
    *,
    ttl_s: float,
    mirrors_dir: Path,
    dry_run: bool = False,
    held: Collection[locks.LeaseKey] = frozenset(),
    hub_id: str | None = None,
    batch: int = BATCH,
    wait_s: float = DEFAULT_WAIT_S,
) -> dict[str, Any]:
    """Remove leases idle past ``ttl_s`` that no live upload holds, and their temp files.

    ``held`` and ``hub_id`` come from a hub running this as its job: its own leases count
    as expired only when its registry does not hold them.
    """
    result: dict[str, Any] = {
        "expired": [],
        "removed_files": [],
        "ttl_s": ttl_s,
        "dry_run": dry_run,
        "skipped": False,
    }
    with admin_lock(store, "gc locks", wait_s=wait_s) as acquired:
        if not acquired:
            return {**result, "skipped": True}
        after: locks.LeaseKey | None = None
        while True:
            with store.session() as session:
                candidates, after = locks.expired_leases(
                    session, ttl_s=ttl_s, held=held, hub_id=hub_id, after=after, batch=batch
                )
            if candidates and not dry_run:
                with store.session(write=True) as session:
                    candidates = locks.delete_leases(session, candidates)
            for lease in candidates:
                result["expired"].append(lease)
                if lease.temp_path and uploads.remove_temp_file(
                    mirrors_dir, lease.temp_path, dry_run=dry_run
                ):
                    result["removed_files"].append(lease.temp_path)
            if after is None:
                break
    return result


# --- gc mirrors ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSeen:
    node_id: str
    revoked: bool
    last_seen: datetime


def nodes_seen(session: Session, node_ids: Sequence[str]) -> dict[str, NodeSeen]:
    """When each known node was last seen: its latest presence, else when it joined."""
    rows = session.execute(
        select(
            Node.id,
            Node.revoked_at,
            Node.created_at,
            Node.last_seen_at,
            Presence.connected_at,
            Presence.last_heartbeat,
            Presence.disconnected_at,
        )
        .outerjoin(Presence, Presence.node_id == Node.id)
        .where(Node.id.in_(list(node_ids)))
    )
    seen = {}
    for node_id, revoked_at, *times in rows:
        seen[node_id] = NodeSeen(
            node_id, revoked_at is not None, max(t for t in times if t is not None)
        )
    return seen


def run_gc_mirrors(
    store: Store,
    *,
    mirrors_dir: Path,
    retention_s: float,
    dry_run: bool = False,
    held_temp_paths: Collection[str] = frozenset(),
    local_hubs: Collection[str] = frozenset(),
    grace_s: float = ORPHAN_GRACE_S,
    batch: int = BATCH,
    wait_s: float = DEFAULT_WAIT_S,
) -> dict[str, Any]:
    """Remove mirrors of revoked, unknown and long-unseen nodes, orphaned temp files and
    empty folders; never a node's mirror while a live hub has an upload of it running.

    Acts on this host's mirrors folder and the file records of what it holds: the records
    of ``local_hubs`` (the hubs whose disk this is) follow the disk, and records of hubs
    that no longer exist are dropped; those of other hubs stay to their own gc.
    """
    result: dict[str, Any] = {
        "removed_files": 0,
        "removed_bytes": 0,
        "nodes": [],
        "temp_files": [],
        "empty_dirs": 0,
        "retention_s": retention_s,
        "dry_run": dry_run,
        "skipped": False,
    }
    with admin_lock(store, "gc mirrors", wait_s=wait_s) as acquired:
        if not acquired:
            return {**result, "skipped": True}
        result["records"] = sync_records(
            store, mirrors_dir, local_hubs, dry_run=dry_run, grace_s=grace_s
        )
        names = mirrors.node_dirs(mirrors_dir)
        if not names:
            return result
        with store.session() as session:
            keep = locks.live_temp_paths(session) | set(held_temp_paths)
            busy = locks.live_lease_nodes(session)
            seen: dict[str, NodeSeen] = {}
            for start in range(0, len(names), batch):
                seen.update(nodes_seen(session, names[start : start + batch]))
        cutoff = clock.now() - timedelta(seconds=retention_s)
        emptied: list[str] = []
        held_roots = {Path(path).absolute() for path in held_temp_paths}
        for name in names:
            root = mirrors_dir / name
            node = seen.get(name)
            if node is None:
                reason = "unknown node"
            elif node.revoked:
                reason = "revoked"
            elif node.last_seen < cutoff:
                reason = f"not seen since {clock.iso(node.last_seen)}"
            else:
                reason = ""
            in_use = name in busy or any(
                path.is_relative_to(root.absolute()) for path in held_roots
            )
            if reason and not in_use:
                removed = mirrors.remove_tree(root, dry_run=dry_run)
                if not dry_run:
                    with store.session(write=True) as session:
                        mirrors.forget_files(session, name, removed.paths)
                        mirrors.forget_node(session, name, local_hubs)
                emptied.append(name)
                result["nodes"].append(
                    {
                        "node_id": name,
                        "reason": reason,
                        "files": removed.files,
                        "bytes": removed.bytes,
                    }
                )
                result["removed_files"] += removed.files
                result["removed_bytes"] += removed.bytes
                continue
            keep_here = {path for path in keep if path.startswith(str(root.absolute()) + os.sep)}
            for path, size in mirrors.remove_orphan_temps(
                root.absolute(), keep_here, grace_s=grace_s, dry_run=dry_run
            ):
                result["temp_files"].append(path)
                result["removed_files"] += 1
                result["removed_bytes"] += size
            result["empty_dirs"] += mirrors.remove_empty_dirs(
                root, grace_s=grace_s, dry_run=dry_run, keep_root=False
            )
        if emptied and not dry_run:
            with store.session(write=True) as session:
                quotas.reset_usage(session, emptied)
    return result


def sync_records(
    store: Store,
    mirrors_dir: Path,
    local_hubs: Collection[str],
    *,
    dry_run: bool = False,
    grace_s: float = ORPHAN_GRACE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """Bring the file records of this host's hubs in line with its mirrors folder.

    A record of a local hub whose file is gone is removed; a committed file with no record
    (written before records began, or its record lost in a crash) is recorded for the
    first local hub, without a sha256 (files changed within ``grace_s`` are left: their
    upload's record may be on its way); records of hubs the store no longer knows are
    removed; records of hubs that are down are counted, not touched (their disk may come
    back). Returns {added, removed, forgotten_hubs, on_hubs_down}.
    """
    import time

    now = time.time() if now is None else now
    local = sorted(local_hubs)
    summary: dict[str, Any] = {"added": 0, "removed": 0, "forgotten_hubs": {}, "on_hubs_down": {}}
    with store.session() as session:
        states = {hub.id: hub.state for hub in hubs.list_hubs(session, include_stopped=True)}
        counts = mirrors.records_by_hub(session)
        local_nodes = mirrors.recorded_nodes(session, local) if local else set()
    forgotten = [hub for hub in counts if hub not in states and hub not in local_hubs]
    summary["forgotten_hubs"] = {hub: counts[hub] for hub in forgotten}
    summary["on_hubs_down"] = {
        hub: count
        for hub, count in counts.items()
        if hub in states and states[hub] != "live" and hub not in local_hubs
    }
    found: list[mirrors.FileRecord] = []
    missing: dict[str, list[str]] = {}
    names = mirrors.node_dirs(mirrors_dir) if local else []
    for name in sorted(set(names) | local_nodes):
        with store.session() as session:
            recorded = dict(mirrors.node_records(session, name))
        on_disk = set()
        for rel, info in mirrors.disk_files(mirrors_dir / name):
            on_disk.add(rel)
            if rel not in recorded and now - info.st_mtime >= grace_s:
                found.append(mirrors.FileRecord(name, rel, info.st_size, "", local[0]))
        gone = [p for p, hub in recorded.items() if hub in local_hubs and p not in on_disk]
        if gone:
            missing[name] = gone
    summary["added"] = len(found)
    summary["removed"] = sum(len(paths) for paths in missing.values())
    if not dry_run and (found or missing or forgotten):
        with store.session(write=True) as session:
            for start in range(0, len(found), BATCH):
                mirrors.record_files(session, found[start : start + BATCH], replace=False)
            for node_id, paths in missing.items():
                mirrors.forget_files(session, node_id, paths)
            mirrors.forget_hubs(session, forgotten)
    return summary


# --- mirrors rm ----------------------------------------------------------------------------


def run_mirrors_rm(
    store: Store,
    *,
    mirrors_dir: Path,
    ref: str,
    paths: Sequence[str],
    dry_run: bool = False,
    local_hubs: Collection[str] = frozenset(),
) -> mirrors.MirrorRemoval:
    """Remove a node's whole mirror or some of its paths from this host's disk, with their
    file records, and give the quota back. A path only another hub holds is NOT_FOUND
    here, with the hub to run it on."""
    with store.session() as session:
        node_id, name = mirrors.mirror_node(session, mirrors_dir, ref)
        elsewhere = mirrors.recorded_elsewhere(session, node_id, paths, local_hubs)
    try:
        removal = mirrors.remove_paths(mirrors_dir, node_id, name, paths, dry_run=dry_run)
    except NotFound as err:
        for path, hub_id in elsewhere.items():
            if not (mirrors_dir / node_id / path).exists():
                raise NotFound(
                    f"{path!r} is held by hub {hub_id}, on its own disk, not in this host's "
                    f"mirrors ({mirrors_dir}); run `cortexctl mirrors rm` on that hub's host"
                ) from None
        raise err from None
    if not dry_run:
        with store.session(write=True) as session:
            mirrors.forget_files(session, node_id, removal._paths)
            if paths:
                quotas.release(session, node_id, removal.bytes_removed, removal.files_removed)
            else:
                mirrors.forget_node(session, node_id, local_hubs)
                quotas.reset_usage(session, [node_id])
    if not paths:
        gone = set(removal._paths)
        with store.session() as session:
            others: dict[str, int] = {}
            for path, hub_id in mirrors.node_records(session, node_id):
                if hub_id not in local_hubs and path not in gone:
                    others[hub_id] = others.get(hub_id, 0) + 1
        removal = dataclasses.replace(removal, held_elsewhere=others)
    return removal


# --- gc invites, gc tasks ------------------------------------------------------------------


def _run_batched(
    store: Store,
    name: str,
    gc: Any,
    *,
    dry_run: bool,
    batch: int,
    wait_s: float,
    **criteria: float,
) -> dict[str, Any]:
    result: dict[str, Any] = {"removed": [], "count": 0, "dry_run": dry_run, "skipped": False}
    with admin_lock(store, name, wait_s=wait_s) as acquired:
        if not acquired:
            return {**result, "skipped": True}
        if dry_run:
            with store.session() as session:
                result["removed"] = gc(session, dry_run=True, batch=DRY_RUN_LIMIT, **criteria)
        else:
            while True:
                with store.session(write=True) as session:
                    ids = gc(session, batch=batch, **criteria)
                result["removed"].extend(ids)
                if len(ids) < batch:
                    break
    result["count"] = len(result["removed"])
    return result


def run_gc_invites(
    store: Store,
    *,
    retention_s: float,
    dry_run: bool = False,
    batch: int = BATCH,
    wait_s: float = DEFAULT_WAIT_S,
) -> dict[str, Any]:
    """Remove invites expired, used up or revoked longer than ``retention_s`` ago."""
    result = _run_batched(
        store,
        "gc invites",
        invites.gc_invites,
        dry_run=dry_run,
        batch=batch,
        wait_s=wait_s,
        retention_s=retention_s,
    )
    return {**result, "retention_s": retention_s}


def run_gc_tasks(
    store: Store,
    *,
    older_than_s: float,
    dry_run: bool = False,
    batch: int = BATCH,
    wait_s: float = DEFAULT_WAIT_S,
) -> dict[str, Any]:
    """Expire overdue queued tasks, then remove finished ones older than ``older_than_s``."""
    with store.session(write=not dry_run) as session:
        expired = journal.expire_tasks(session, batch=DRY_RUN_LIMIT, dry_run=dry_run)
    result = _run_batched(
        store,
        "gc tasks",
        journal.gc_tasks,
        dry_run=dry_run,
        batch=batch,
        wait_s=wait_s,
        older_than_s=older_than_s,
    )
    return {**result, "older_than_s": older_than_s, "expired": expired}


def run_expire_tasks(store: Store, *, dry_run: bool = False) -> dict[str, Any]:
    """The hub's `task_expiry` job: end EXPIRED the queued tasks past their expiry."""
    expired: list[str] = []
    while True:
        with store.session(write=not dry_run) as session:
            batch = journal.expire_tasks(session, batch=BATCH, dry_run=dry_run)
        expired += batch
        if len(batch) < BATCH or dry_run:
            return {"expired": expired, "count": len(expired), "dry_run": dry_run}


def run_gc_audit(
    store: Store, *, retention_s: float, dry_run: bool = False, batch: int = BATCH
) -> dict[str, Any]:
    """`cortexctl gc audit` and the hub's audit_gc job: entries past the retention, in
    batches under an admin lock; request ids of old submits are forgotten with them."""
    from cortexctl.core import audit, submission

    result = _run_batched(
        store,
        "gc audit",
        audit.gc_audit,
        dry_run=dry_run,
        batch=batch,
        wait_s=DEFAULT_WAIT_S,
        retention_s=retention_s,
    )
    if not dry_run and not result["skipped"]:
        with store.session(write=True) as session:
            submission.gc_submit_requests(session, older_than_s=submission.REQUEST_ID_TTL_S)
    return {**result, "retention_s": retention_s}
