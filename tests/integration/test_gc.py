"""`cortexctl gc locks|mirrors|invites|tasks` from the command line, beside a running hub."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import update

from cortexctl.core import clock, hubs, locks, uploads
from cortexctl.core.admin_lock import admin_lock
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from cortexctl.store.engine import Store
from cortexctl.store.models import SyncLease
from tests.conftest import wait_until
from tests.helpers import CORTEXCTL, cli_json, run_cli
from tests.integration.test_sync import SyncHub, bearer, start_sync_hub

pytestmark = pytest.mark.integration


@pytest.fixture
def hub(tmp_path: Path, store_env: dict[str, str], isolated_env: Path) -> Iterator[SyncHub]:
    with start_sync_hub(tmp_path, store_env, isolated_env) as running:
        yield running


def store_of(hub: SyncHub) -> Store:
    return Store(hub.database_url, pool_size=2)


def dead_leases(hub: SyncHub, count: int) -> list[Path]:
    """Leases a crashed hub left behind (idle an hour), each with its temp file."""
    store = store_of(hub)
    temps = []
    try:
        with store.session(write=True) as session:
            hubs.register_hub(session, "hub_crashed", "127.0.0.1:9")
            hubs.stop_hub(session, "hub_crashed")
            for index in range(count):
                sync_id = os.urandom(16).hex()
                temp = hub.node_mirror / "left" / uploads.temp_name(sync_id)
                temp.parent.mkdir(parents=True, exist_ok=True)
                temp.write_bytes(b"partial")
                temps.append(temp)
                locks.begin_lease(
                    session,
                    node_id=hub.node_id,
                    path=f"left/{index}",
                    sync_id=sync_id,
                    hub_id="hub_crashed",
                    temp_path=str(temp),
                )
            session.execute(
                update(SyncLease)
                .where(SyncLease.hub_id == "hub_crashed")
                .values(last_activity=clock.now() - timedelta(hours=1))
            )
    finally:
        store.dispose()
    return temps


def test_gc_locks_never_touches_a_live_upload(hub: SyncHub) -> None:
    temps = dead_leases(hub, 3)

    async def scenario() -> tuple[dict[str, object], dict[str, object], pb.FileSyncResult]:
        async with grpc.aio.insecure_channel(hub.address) as channel:
            stub = pb_grpc.AgentOrchestratorStub(channel)
            live = stub.SyncFile(metadata=bearer(hub.credential))
            await live.write(pb.FileChunk(path="live.bin", data=b"ab"))
            await asyncio.to_thread(
                wait_until, lambda: hub.leases() == 4, 15, "the live upload's lease"
            )
            dry = await asyncio.to_thread(cli_json, "gc", "locks", "--ttl", "0s", "--dry-run")
            done = await asyncio.to_thread(cli_json, "gc", "locks", "--ttl", "0s")
            await live.write(
                pb.FileChunk(
                    offset=2, data=b"c", is_final=True, sha256=hashlib.sha256(b"abc").hexdigest()
                )
            )
            await live.done_writing()
            return dry, done, await live

    dry, done, result = asyncio.run(scenario())
    assert {lease["path"] for lease in dry["expired"]} == {"left/0", "left/1", "left/2"}
    assert set(dry["removed_files"]) == {str(t) for t in temps}
    assert {lease["path"] for lease in done["expired"]} == {"left/0", "left/1", "left/2"}
    assert set(done["removed_files"]) == {str(t) for t in temps}
    assert not any(t.exists() for t in temps)
    assert result.size == 3
    assert (hub.node_mirror / "live.bin").read_bytes() == b"abc"
    again = cli_json("gc", "locks", "--ttl", "0s")
    assert again["expired"] == [] and again["removed_files"] == []
    quiet = run_cli("gc", "locks", "--quiet")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")


def test_concurrent_gc_runs_both_succeed_without_double_deletion(hub: SyncHub) -> None:
    dead_leases(hub, 40)
    runs = [
        subprocess.Popen(
            [*CORTEXCTL, "gc", "locks", "--ttl", "1m", "--json"],
            env=hub.hub.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    removed = [lease["path"] for out, _ in outputs for lease in json.loads(out)["expired"]]
    assert sorted(removed) == sorted(f"left/{i}" for i in range(40))
    assert hub.leases() == 0


def test_bad_durations_are_usage_errors(hub: SyncHub) -> None:
    for args in (
        ("gc", "locks", "--ttl", "soon"),
        ("gc", "mirrors", "--older-than", "-3d"),
        ("gc", "tasks", "--older-than", "1w"),
    ):
        result = run_cli(*args)
        assert result.exit_code == 2, args
        assert "30s, 10m, 12h, 7d, 1h30m" in result.stderr
    assert run_cli("gc", "tasks").exit_code == 2  # --older-than is required


def test_gc_mirrors_removes_revoked_nodes_and_orphans(hub: SyncHub) -> None:
    (hub.node_mirror / "keep").mkdir(parents=True)
    (hub.node_mirror / "keep" / "f.txt").write_bytes(b"hello")
    orphan = hub.node_mirror / "keep" / uploads.temp_name("a" * 32)
    orphan.write_bytes(b"xx")
    past = clock.now().timestamp() - 3600
    os.utime(orphan, (past, past))
    stranger = hub.data_dir / "mirrors" / "nd_gone"
    stranger.mkdir(parents=True)
    (stranger / "x").write_bytes(b"123")
    dry = cli_json("gc", "mirrors", "--dry-run")
    assert [n["node_id"] for n in dry["nodes"]] == ["nd_gone"]
    assert (dry["removed_files"], dry["removed_bytes"]) == (2, 5)
    assert stranger.exists() and orphan.exists()
    done = cli_json("gc", "mirrors")
    assert (done["removed_files"], done["removed_bytes"]) == (2, 5)
    assert not stranger.exists() and not orphan.exists()
    assert (hub.node_mirror / "keep" / "f.txt").exists()
    assert cli_json("gc", "mirrors")["removed_files"] == 0  # idempotent

    cli_json("nodes", "revoke", "n1", "--yes")
    done = cli_json("gc", "mirrors")
    assert [(n["node_id"], n["reason"]) for n in done["nodes"]] == [(hub.node_id, "revoked")]
    assert not hub.node_mirror.exists()
    quiet = run_cli("gc", "mirrors", "--quiet")
    assert (quiet.exit_code, quiet.stdout) == (0, "")


def test_gc_invites_and_tasks_from_the_cli(hub: SyncHub) -> None:
    cli_json("invites", "revoke", cli_json("invites", "create")["id"])
    assert cli_json("gc", "invites")["count"] == 0  # revoked only just now: kept
    assert run_cli("gc", "invites").stdout.strip() == "no invites to remove"
    result = cli_json("gc", "tasks", "--older-than", "0s", "--dry-run")
    assert (result["count"], result["dry_run"]) == (0, True)
    quiet = run_cli("gc", "tasks", "--older-than", "7d", "-q")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")


def test_a_second_run_waits_then_skips(hub: SyncHub) -> None:
    store = store_of(hub)
    try:
        with admin_lock(store, "gc invites") as held:
            assert held
            plain = subprocess.run(
                [*CORTEXCTL, "gc", "invites"], env=hub.hub.env, capture_output=True, timeout=60
            )
    finally:
        store.dispose()
    assert plain.returncode == 0
    assert b"another run of gc invites is in progress; nothing done" in plain.stderr
