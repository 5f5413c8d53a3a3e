"""The admin tasks as the CLI and the hub's jobs run them: gc locks, mirrors, invites, tasks."""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from cortexctl.core import clock, hubs, invites, journal, locks, maintenance, nodes, uploads
from cortexctl.core.admin_lock import admin_lock
from cortexctl.core.sandbox import SandboxDefaults
from cortexctl.store.engine import Store
from cortexctl.store.models import Invite, Node, Presence, SyncLease, Task


def join(store: Store, name: str) -> str:
    with store.session(write=True) as session:
        token = invites.create_invite(session, ttl_s=60).token
        return nodes.join_with_invite(
            session,
            token,
            hostname=name,
            requested_name=name,
            agent_version="t",
            labels={},
            capabilities=[],
        ).node.id


def add_lease(
    store: Store, mirrors_dir: Path, node_id: str, path: str, hub_id: str, idle_s: float
) -> Path:
    sync_id = os.urandom(16).hex()
    temp = mirrors_dir / node_id / uploads.temp_name(sync_id)
    temp.parent.mkdir(parents=True, exist_ok=True)
    temp.write_bytes(b"partial")
    with store.session(write=True) as session:
        locks.begin_lease(
            session, node_id=node_id, path=path, sync_id=sync_id, hub_id=hub_id, temp_path=str(temp)
        )
        session.execute(
            update(SyncLease)
            .where(SyncLease.sync_id == sync_id)
            .values(last_activity=clock.now() - timedelta(seconds=idle_s))
        )
    return temp


def lease_paths(store: Store) -> set[str]:
    with store.session() as session:
        return set(session.scalars(select(SyncLease.path)))


@pytest.fixture
def hubs_live_and_dead(fresh_store: Store) -> None:
    with fresh_store.session(write=True) as session:
        hubs.register_hub(session, "hub_live", "127.0.0.1:1")
        hubs.register_hub(session, "hub_dead", "127.0.0.1:2")
        hubs.stop_hub(session, "hub_dead")


def test_gc_locks_removes_only_what_nobody_holds(
    fresh_store: Store, tmp_path: Path, hubs_live_and_dead: None
) -> None:
    mirrors_dir = tmp_path / "mirrors"
    node = join(fresh_store, "n1")
    dead = add_lease(fresh_store, mirrors_dir, node, "dead-hub", "hub_dead", idle_s=700)
    fresh = add_lease(fresh_store, mirrors_dir, node, "dead-hub-recent", "hub_dead", idle_s=1)
    live = add_lease(fresh_store, mirrors_dir, node, "live-hub", "hub_live", idle_s=5)
    held = add_lease(fresh_store, mirrors_dir, node, "held", "hub_live", idle_s=700)
    stale = add_lease(fresh_store, mirrors_dir, node, "not-held", "hub_live", idle_s=700)

    def run(**extra: Any) -> dict[str, Any]:
        return maintenance.run_gc_locks(fresh_store, ttl_s=0, mirrors_dir=mirrors_dir, **extra)

    # As hub_live's own job sees it: whatever its registry does not hold has ended.
    dry = run(dry_run=True, hub_id="hub_live", held={(node, "held")})
    assert {lease.path for lease in dry["expired"]} == {
        "dead-hub",
        "dead-hub-recent",
        "live-hub",
        "not-held",
    }
    assert len(lease_paths(fresh_store)) == 5 and dead.exists()  # a dry run changes nothing

    # From the CLI (no registry at hand): a live hub's lease is idle only past the floor.
    cli = run()
    assert {lease.path for lease in cli["expired"]} == {
        "dead-hub",
        "dead-hub-recent",
        "held",
        "not-held",
    }
    assert set(cli["removed_files"]) == {str(dead), str(fresh), str(held), str(stale)}
    assert lease_paths(fresh_store) == {"live-hub"}
    assert live.exists() and not dead.exists()
    assert run()["expired"] == []  # idempotent


def test_hub_job_keeps_the_leases_its_registry_holds(
    fresh_store: Store, tmp_path: Path, hubs_live_and_dead: None
) -> None:
    mirrors_dir = tmp_path / "mirrors"
    node = join(fresh_store, "n1")
    add_lease(fresh_store, mirrors_dir, node, "held", "hub_live", idle_s=700)
    add_lease(fresh_store, mirrors_dir, node, "ended", "hub_live", idle_s=700)
    result = maintenance.run_gc_locks(
        fresh_store,
        ttl_s=600,
        mirrors_dir=mirrors_dir,
        hub_id="hub_live",
        held={(node, "held")},
        batch=1,
    )
    assert [lease.path for lease in result["expired"]] == ["ended"]
    assert lease_paths(fresh_store) == {"held"}


def test_gc_locks_runs_do_not_overlap(
    fresh_store: Store, tmp_path: Path, hubs_live_and_dead: None
) -> None:
    mirrors_dir = tmp_path / "mirrors"
    node = join(fresh_store, "n1")
    for index in range(30):
        add_lease(fresh_store, mirrors_dir, node, f"p{index}", "hub_dead", idle_s=700)
    results: list[dict[str, Any]] = []

    def gc() -> None:
        results.append(
            maintenance.run_gc_locks(fresh_store, ttl_s=60, mirrors_dir=mirrors_dir, batch=7)
        )

    threads = [threading.Thread(target=gc) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    removed = [lease.path for result in results for lease in result["expired"]]
    assert sorted(removed) == sorted(f"p{i}" for i in range(30))  # each exactly once
    assert lease_paths(fresh_store) == set()
    with admin_lock(fresh_store, "gc locks"):
        skipped = maintenance.run_gc_locks(fresh_store, ttl_s=60, mirrors_dir=mirrors_dir, wait_s=0)
    assert skipped["skipped"] is True


def age(path: Path, seconds: float = 3600) -> None:
    past = time.time() - seconds
    for current, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.utime(os.path.join(current, name), (past, past), follow_symlinks=False)
    os.utime(path, (past, past))


def test_gc_mirrors(fresh_store: Store, tmp_path: Path, hubs_live_and_dead: None) -> None:
    mirrors_dir = tmp_path / "mirrors"
    fresh, stale, revoked, uploading = (
        join(fresh_store, n) for n in ("fresh", "stale", "rev", "up")
    )
    for node in (fresh, stale, revoked, uploading, "nd_unknown"):
        (mirrors_dir / node / "sub").mkdir(parents=True)
        (mirrors_dir / node / "sub" / "f.txt").write_bytes(b"12345")
    (mirrors_dir / fresh / "empty" / "deeper").mkdir(parents=True)
    orphan = mirrors_dir / fresh / "sub" / uploads.temp_name("a" * 32)
    orphan.write_bytes(b"xy")
    age(mirrors_dir)
    young = mirrors_dir / fresh / uploads.temp_name("b" * 32)
    young.write_bytes(b"young")
    live_temp = add_lease(fresh_store, mirrors_dir, fresh, "busy", "hub_live", idle_s=0)
    add_lease(fresh_store, mirrors_dir, uploading, "busy", "hub_live", idle_s=0)
    age(live_temp)
    long_ago = clock.now() - timedelta(days=90)
    with fresh_store.session(write=True) as session:
        session.execute(
            update(Node).where(Node.id.in_([stale, uploading])).values(created_at=long_ago)
        )
        session.add(
            Presence(
                node_id=fresh,
                hub_id="hub_live",
                connected_at=clock.now(),
                last_heartbeat=clock.now(),
            )
        )
        nodes.revoke_node(session, revoked)

    def run(**extra: Any) -> dict[str, Any]:
        return maintenance.run_gc_mirrors(
            fresh_store, mirrors_dir=mirrors_dir, retention_s=30 * 86400, **extra
        )

    dry = run(dry_run=True)
    assert sorted(n["node_id"] for n in dry["nodes"]) == sorted([stale, revoked, "nd_unknown"])
    assert (mirrors_dir / stale).exists() and orphan.exists()
    result = run()
    assert {k: result[k] for k in ("removed_files", "removed_bytes", "empty_dirs")} == {
        k: dry[k] for k in ("removed_files", "removed_bytes", "empty_dirs")
    }
    assert result["removed_files"] == 4 and result["removed_bytes"] == 3 * 5 + 2
    assert result["temp_files"] == [str(orphan)]
    assert result["empty_dirs"] == 2
    assert sorted(os.listdir(mirrors_dir)) == sorted([fresh, uploading])
    assert young.exists() and live_temp.exists()  # too young / a live upload's
    assert not (mirrors_dir / fresh / "empty").exists()
    again = run()
    assert (again["removed_files"], again["nodes"], again["empty_dirs"]) == (0, [], 0)


def test_gc_invites_and_tasks(fresh_store: Store) -> None:
    node_id = join(fresh_store, "n1")
    long_ago = clock.now() - timedelta(days=60)
    with fresh_store.session(write=True) as session:
        for _ in range(12):
            invites.create_invite(session, ttl_s=60)
        session.execute(update(Invite).values(expires_at=long_ago, created_at=long_ago))
        invites.create_invite(session, ttl_s=3600)
        node = session.get(Node, node_id)
        for _ in range(9):  # a STRICT node with no allow-list: each ends REJECTED at once
            journal.submit_task(session, node, argv=["true"], defaults=SandboxDefaults())
        session.execute(update(Task).values(finished_at=long_ago))
        journal.submit_task(session, node, argv=["true"], defaults=SandboxDefaults())

    def counts() -> tuple[int, int]:
        with fresh_store.session() as session:
            return (
                len(session.scalars(select(Invite.id)).all()),
                len(session.scalars(select(Task.id)).all()),
            )

    assert counts() == (14, 10)  # 12 old + 1 fresh + the one the node joined with
    dry = maintenance.run_gc_invites(fresh_store, retention_s=86400, dry_run=True)
    assert dry["count"] == 13 and counts() == (14, 10)
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                maintenance.run_gc_invites(fresh_store, retention_s=86400, batch=5)
            )
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    removed = [i for result in results for i in result["removed"]]
    assert len(removed) == len(set(removed)) == 13
    assert maintenance.run_gc_invites(fresh_store, retention_s=86400)["count"] == 0

    assert maintenance.run_gc_tasks(fresh_store, older_than_s=86400, dry_run=True)["count"] == 9
    assert counts() == (1, 10)
    assert maintenance.run_gc_tasks(fresh_store, older_than_s=86400, batch=4)["count"] == 9
    assert maintenance.run_gc_tasks(fresh_store, older_than_s=86400)["count"] == 0
    assert counts() == (1, 1)
