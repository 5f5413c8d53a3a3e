"""Each admin API method on a real `cortexctl serve` with a real agent, through the Python
client: it does what the local command does, and core audits it once (actor, outcome, no
secret). Also: WatchEvents shows a change made by the local CLI."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cortexctl.client import AsyncHub, Event, Hub
from cortexctl.core import clock
from cortexctl.core.operations import GC_KINDS
from cortexctl.errors import InvalidArgument, NotFound, Unauthenticated
from tests.conftest import wait_until
from tests.helpers import Mesh, cli_json, run_cli

pytestmark = pytest.mark.integration


def admin_token(role: str, name: str) -> str:
    created = cli_json("admin-tokens", "create", "--role", role, "--name", name)
    return str(created["token"])


def audit_by(actor: str) -> list[dict[str, Any]]:
    return [e for e in cli_json("audit", "list", "--limit", "1000") if e["actor"] == actor]


def mirror_file(mesh: Mesh, node_id: str, rel: str, data: bytes) -> None:
    path = Path(mesh.env["CORTEX_DATA_DIR"]) / "mirrors" / node_id / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    old = time.time() - 3600  # past gc mirrors' grace: it records the files it finds
    os.utime(path, (old, old))


def test_node_methods_do_what_the_cli_does_and_are_audited_once(mesh: Mesh) -> None:
    mesh.start_agent("worker", mesh.invite())
    boss_token = admin_token("admin", "boss")
    with Hub.connect(mesh.hub.address, token=boss_token) as hub:
        changes = hub.set_sandbox(["worker"], mode="strict", allowed_commands=["true", "sleep"])
        assert [(c.name, c.sandbox, c.allowed_commands) for c in changes] == [
            ("worker", "strict", ["sleep", "true"])
        ]
        assert hub.set_sandbox(["worker"], network=False, dry_run=True)[0].network == "deny"
        with pytest.raises(InvalidArgument, match="only one"):
            hub.set_sandbox(["worker"], all_nodes=True, mode="strict")
        wait_until(
            lambda: cli_json("nodes", "show", "worker")["policy_acked"] == changes[0].revision,
            30,
            "the agent to apply the STRICT policy",
        )
        usage = hub.set_quota("worker", quota_bytes=10_000_000, quota_files=100)
        assert (usage.quota_bytes, usage.quota_files, usage.quota_configured) == (
            10_000_000,
            100,
            True,
        )
        assert usage.data["node_name"] == "worker"  # the CLI's --json view
        assert hub.cordon("worker").cordoned
        assert cli_json("nodes", "show", "worker")["cordoned"] is True
        assert not hub.uncordon("worker").cordoned
        drained = hub.drain("worker", timeout=30)
        assert (drained.drained, drained.running_tasks, drained.node.cordoned) == (True, [], True)
        hub.uncordon("worker")
        renamed = hub.rename_node("worker", "builder")
        assert (renamed.old_name, renamed.name) == ("worker", "builder")
        assert hub.rename_node("builder", "x", dry_run=True).dry_run
        assert hub.node("builder").name == "builder"
        assert hub.rotate_credential("builder", dry_run=True).node_credential == ""
        rotated = hub.rotate_credential("builder")
        assert rotated.node_credential.startswith("cortex-node.")
        planned = hub.revoke_nodes(["builder"], dry_run=True)
        assert [(r.name, r.dry_run) for r in planned] == [("builder", True)]
        revoked = hub.revoke_nodes(["builder"])
        assert [(r.name, r.revoked) for r in revoked] == [("builder", True)]
        wait_until(lambda: not mesh.node("builder")["online"], 30, "the revoked node to go")
        assert hub.delete_node("builder", dry_run=True).dry_run
        deleted = hub.delete_node("builder")
        assert (deleted.name, deleted.dry_run) == ("builder", False)
        assert deleted.data["name"] == "builder"
        with pytest.raises(NotFound):
            hub.node("builder")
    entries = audit_by("boss")
    assert all(e["actor_kind"] == "token" and e["outcome"] == "ok" for e in entries)
    assert all("admin API from ipv4:127.0.0.1" in e["source"] for e in entries)
    assert Counter(e["action"] for e in entries) == {
        "nodes.sandbox": 1,
        "nodes.quota": 1,
        "nodes.cordon": 2,  # cordon, and drain's
        "nodes.uncordon": 2,
        "nodes.rename": 1,
        "nodes.rotate_credential": 1,
        "nodes.revoke": 1,
        "nodes.delete": 1,
    }
    dumped = json.dumps(cli_json("audit", "list", "--limit", "1000"))
    for secret in (rotated.node_credential, boss_token):
        assert secret not in dumped
    # last_used_at is written once for these calls (not once per call).
    (boss,) = [t for t in cli_json("admin-tokens", "list") if t["name"] == "boss"]
    assert boss["last_used_at"] is not None


def test_journal_gc_mirrors_hubs_audit_and_tokens(mesh: Mesh) -> None:
    mesh.start_agent("worker", mesh.invite())
    cli_json("nodes", "sandbox", "worker", "--strict", "--allow", "sleep")
    node_id = mesh.node("worker")["id"]
    big = os.urandom(2 * 1024 * 1024 + 12345)  # more than one 1 MiB chunk
    mirror_file(mesh, node_id, "logs/big.bin", big)
    mirror_file(mesh, node_id, "empty.txt", b"")
    operator_token = admin_token("operator", "robot")
    with Hub.connect(mesh.hub.address, token=operator_token) as hub:
        task = hub.submit("worker", ["sleep", "30"])
        wait_until(lambda: task.result().state == "running", 30, "the task to run")
        assert hub.fail_node_tasks("worker", dry_run=True).failed_tasks == 1
        failed = hub.fail_node_tasks("worker", "node reimaged")
        assert (failed.node_name, failed.failed_tasks) == ("worker", 1)
        assert task.wait(timeout=30).state == "failed"
        for kind in GC_KINDS:
            older = 0.0 if kind == "tasks" else None
            planned = hub.gc(kind, dry_run=True, older_than=older)
            assert (planned.kind, planned.dry_run, planned.skipped) == (kind, True, False)
            assert planned.data["task"] == kind  # the `gc KIND --json` report
            done = hub.gc(kind, older_than=older)
            assert (done.dry_run, done.skipped) == (False, False)
        assert hub.gc("tasks", older_than=0).count == 0  # the failed task went just now
        with pytest.raises(InvalidArgument, match="bad gc kind"):
            hub.gc("everything")
        # gc mirrors (above) recorded the files found on the hub's disk.
        listing = hub.list_mirrors("worker")
        assert [(f.path, f.size, f.hub_id) for f in listing.files] == [
            ("empty.txt", 0, mesh.hub.hub_id),
            ("logs/big.bin", len(big), mesh.hub.hub_id),
        ]
        out = io.BytesIO()
        assert hub.download("worker", "logs/big.bin", out) == len(big)
        assert out.getvalue() == big
        assert b"".join(hub.download_chunks("worker", "empty.txt")) == b""
        with pytest.raises(NotFound):
            hub.download("worker", "missing", io.BytesIO())
        with pytest.raises(InvalidArgument):
            hub.download("worker", "../../cortex.db", io.BytesIO())
        with pytest.raises(InvalidArgument):
            hub.download("worker", "logs", io.BytesIO())
        (live,) = hub.hubs()
        assert (live.id, live.state) == (mesh.hub.hub_id, "live")
        since = clock.now() - timedelta(minutes=5)
        mine = hub.audit(actor="robot", since=since)
        assert {e.action for e in mine} >= {"journal.fail", "gc.invites", "mirrors.download"}
        assert hub.audit(since=clock.now() + timedelta(hours=1)) == []
    boss_token = admin_token("admin", "boss")
    with Hub.connect(mesh.hub.address, token=boss_token) as hub:
        removal = hub.remove_mirror_files("worker", ["logs"], dry_run=True)
        assert (removal.files_removed, removal.bytes_removed) == (1, len(big))
        removal = hub.remove_mirror_files("worker", ["logs"])
        assert [i.path for i in removal.items] == ["logs"]
        assert [f.path for f in hub.list_mirrors("worker").files] == ["empty.txt"]
        created = hub.create_admin_token("extra", "viewer", ttl=3600)
        assert (created.admin_token.role, created.admin_token.state) == ("viewer", "active")
        assert {t.name for t in hub.admin_tokens()} == {"robot", "boss", "extra"}
        with Hub.connect(mesh.hub.address, token=created.token) as viewer:
            assert viewer.status()["summary"]["node_count"] == 1
        assert hub.revoke_admin_token("extra").revoked
        with (
            Hub.connect(mesh.hub.address, token=created.token) as viewer,
            pytest.raises(Unauthenticated, match="revoked"),
        ):
            viewer.nodes()
        assert [t.state for t in hub.admin_tokens(include_inactive=True) if t.name == "extra"] == [
            "revoked"
        ]
    robot = Counter(e["action"] for e in audit_by("robot"))
    assert robot == {
        "tasks.submit": 1,
        "journal.fail": 1,
        # Each kind once (dry runs are not changes); nothing of a skipped run.
        **{f"gc.{kind}": 1 for kind in GC_KINDS},
        "gc.tasks": 2,
        "mirrors.download": 2,  # big.bin and empty.txt; refused ones made no entry
    }
    boss = Counter(e["action"] for e in audit_by("boss"))
    assert boss == {"mirrors.rm": 1, "admin_tokens.create": 1, "admin_tokens.revoke": 1}
    dumped = json.dumps(cli_json("audit", "list", "--limit", "1000"))
    for secret in (operator_token, boss_token, created.token):
        assert secret not in dumped


def test_watch_events_shows_a_change_made_by_the_local_cli(mesh: Mesh) -> None:
    mesh.start_agent("worker", mesh.invite())
    token = admin_token("viewer", "watcher")
    seen: list[Event] = []
    watching = threading.Event()

    def watch() -> None:
        with Hub.connect(mesh.hub.address, token=token) as hub:
            for event in hub.events(interval=0.1):
                seen.append(event)
                watching.set()
                if event.event == "audit" and event.audit and event.audit.action == "nodes.cordon":
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    wait_until(watching.is_set, 30, "the watch to start")
    assert seen[0].event == "watching" and seen[0].data["nodes"] == 1
    assert run_cli("nodes", "cordon", "worker").exit_code == 0
    assert run_cli("nodes", "sandbox", "worker", "--strict", "--allow", "true").exit_code == 0
    thread.join(30)
    assert not thread.is_alive(), f"no audit event for the local cordon: {seen}"
    entry = seen[-1].audit
    assert entry is not None
    assert (entry.actor_kind, entry.target) == ("local", mesh.node("worker")["id"])
    assert seen[-1].data["action"] == "nodes.cordon"

    async def policy_event() -> Event:
        async with AsyncHub.connect(mesh.hub.address, token=token) as hub:
            async for event in hub.events(interval=0.1):
                if event.event == "policy_changed":
                    return event
                if event.event == "watching":
                    run_cli("nodes", "sandbox", "worker", "--permissive")
        raise AssertionError("the event stream ended")

    import asyncio

    changed = asyncio.run(asyncio.wait_for(policy_event(), 60))
    assert (changed.name, changed.data["sandbox"]) == ("worker", "permissive")
