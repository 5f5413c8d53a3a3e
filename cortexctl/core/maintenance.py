"""The admin tasks, whole: `gc locks`, `gc mirrors`, `gc invites`, `gc tasks`.

Each run takes its store-level admin lock (a second run at the same time waits a little,
then is skipped), deletes in bounded batches with one transaction per batch, and returns a
plain dict for the caller to render. The CLI and the hub's maintenance jobs call these same
functions — the hub through its executor, since they block.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cortexctl.core import clock, invites, journal, locks, mirrors
from cortexctl.core.admin_lock import DEFAULT_WAIT_S, admin_lock
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
                if lease.temp_path and mirrors.remove_temp_file(
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
    grace_s: float = ORPHAN_GRACE_S,
    batch: int = BATCH,
    wait_s: float = DEFAULT_WAIT_S,
) -> dict[str, Any]:
    """Remove mirrors of revoked, unknown and long-unseen nodes, orphaned temp files and
    empty folders; never a node's mirror while a live hub has an upload of it running."""
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
    return result


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
    """Remove finished tasks from the journal once older than ``older_than_s``."""
    result = _run_batched(
        store,
        "gc tasks",
        journal.gc_tasks,
        dry_run=dry_run,
        batch=batch,
        wait_s=wait_s,
        older_than_s=older_than_s,
    )
    return {**result, "older_than_s": older_than_s}
