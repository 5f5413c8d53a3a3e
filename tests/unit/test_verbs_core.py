"""Core of the everyday verbs: selectors, id prefixes, rename, delete, cordon, expiry,
wait exit codes, the monitoring check, backups and the agent's sync record."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cortexctl.core import clock, hubs, journal, node_removal, nodes, presence, status
from cortexctl.core.backup import backup_store
from cortexctl.core.refs import AmbiguousRef
from cortexctl.core.sandbox import SandboxDefaults
from cortexctl.core.selectors import parse_selector
from cortexctl.errors import Conflict, InvalidArgument, NotFound
from cortexctl.store.engine import Store
from cortexctl.store.models import Node, Task
from tests.unit.test_core import join, new_invite

PERMISSIVE = SandboxDefaults(mode="permissive")


def add(store: Store, name: str, **labels: str) -> Node:
    node = join(store, new_invite(store, labels=labels) if labels else new_invite(store), name)
    return node.node


def submit(store: Store, node_id: str, **kwargs: Any) -> journal.TaskView:
    with store.session(write=True) as session:
        node = session.get(Node, node_id)
        assert node is not None
        return journal.submit_task(session, node, argv=["true"], defaults=PERMISSIVE, **kwargs)


def connect(store: Store, node_id: str, hub_id: str = "hub-a") -> None:
    now = clock.now()
    with store.session(write=True) as session:
        hubs.register_hub(session, hub_id, "127.0.0.1:1")
        presence.flush_presence(
            session,
            [presence.PresenceUpdate(node_id, hub_id, now, last_heartbeat=now)],
        )


# --- selectors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("zone=eu", {"zone": "eu"}, True),
        ("zone=eu", {"zone": "us"}, False),
        ("zone==eu", {"zone": "eu"}, True),
        ("zone!=eu", {"zone": "us"}, True),
        ("zone!=eu", {}, True),
        ("zone!=eu", {"zone": "eu"}, False),
        ("gpu", {"gpu": ""}, True),
        ("gpu", {}, False),
        ("!gpu", {}, True),
        ("zone=eu,gpu", {"zone": "eu"}, False),
        ("zone=eu, gpu", {"zone": "eu", "gpu": "a100"}, True),
    ],
)
def test_selector_requirements_all_hold(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["", "zone=eu,", "=eu", "bad key=x", "!"])
def test_bad_selectors_are_usage_errors_with_an_example(text: str) -> None:
    with pytest.raises(InvalidArgument, match="bad selector .*-l zone=eu"):
        parse_selector(text)


def test_nodes_are_selected_by_label(fresh_store: Store) -> None:
    add(fresh_store, "eu-1", zone="eu")
    add(fresh_store, "eu-2", zone="eu", gpu="a100")
    add(fresh_store, "us-1", zone="us")
    with fresh_store.session() as session:
        picked = nodes.select_nodes(session, parse_selector("zone=eu,!gpu"))
        assert [n.name for n in picked] == ["eu-1"]
        assert [n.name for n in nodes.select_nodes(session, parse_selector("zone!=eu"))] == ["us-1"]


# --- short ids ------------------------------------------------------------------------------


def test_unique_id_prefixes_resolve_and_exact_names_win(fresh_store: Store) -> None:
    first = add(fresh_store, "a")
    with fresh_store.session(write=True) as session:
        # A second node whose id shares a prefix with the first, and a third named like
        # the start of the first's id: the exact name must win over the prefix.
        twin = session.get(Node, first.id)
        assert twin is not None
        session.add(
            Node(
                id=first.id[:8] + "zzzzzzzz",
                name="twin",
                credential_hash="x",
                created_at=clock.now(),
                policy_revision=1,
            )
        )
        session.add(
            Node(
                id="nd_other000000",
                name=first.id[3:9],
                credential_hash="x",
                created_at=clock.now(),
                policy_revision=1,
            )
        )
    with fresh_store.session() as session:
        assert nodes.resolve_node(session, first.id[:12]).id == first.id
        assert nodes.resolve_node(session, first.id[3:12]).id == first.id  # nd_ left out
        assert nodes.resolve_node(session, first.id[3:9]).id == "nd_other000000"  # a name
        with pytest.raises(AmbiguousRef, match=r"matches 2 nodes: .*\(a\), .*\(twin\)") as err:
            nodes.resolve_node(session, first.id[:8])
        assert err.value.exit_code == 2
        with pytest.raises(NotFound):
            nodes.resolve_node(session, "nd_")  # too short to be a prefix


def test_task_ids_resolve_by_unique_prefix(fresh_store: Store) -> None:
    node = add(fresh_store, "n1")
    task = submit(fresh_store, node.id)
    with fresh_store.session() as session:
        assert journal.get_task(session, task.id[:7]).id == task.id
        assert journal.get_task(session, task.id[3:10]).id == task.id
        with pytest.raises(NotFound):
            journal.get_task(session, "tk_nope")


# --- rename, delete, cordon -----------------------------------------------------------------


def test_rename_keeps_names_unique(fresh_store: Store) -> None:
    add(fresh_store, "laptop")
    second = add(fresh_store, "laptop-2")  # a re-join under another name (never suffixed)
    with fresh_store.session(write=True) as session:
        with pytest.raises(Conflict, match="taken by node") as err:
            nodes.rename_node(session, "laptop-2", "laptop")
        assert err.value.exit_code == 5
        with pytest.raises(InvalidArgument):
            nodes.rename_node(session, "laptop-2", "bad name")
        with pytest.raises(InvalidArgument, match="look like a node id"):
            nodes.rename_node(session, "laptop-2", "nd_x")
        assert nodes.rename_node(session, "laptop-2", "desk", dry_run=True).name == "laptop-2"
        nodes.rename_node(session, "laptop-2", "desk")
    with fresh_store.session() as session:
        assert nodes.resolve_node(session, "desk").id == second.id


def test_delete_refuses_a_connected_node_and_frees_the_name(
    fresh_store: Store, tmp_path: Path
) -> None:
    node = add(fresh_store, "laptop")
    queued = submit(fresh_store, node.id)
    connect(fresh_store, node.id)
    mirrors = tmp_path / "mirrors"
    (mirrors / node.id / "src").mkdir(parents=True)
    (mirrors / node.id / "src" / "a.txt").write_text("hello")
    with pytest.raises(Conflict, match="is online; revoke it first"):
        node_removal.delete_node(fresh_store, "laptop", PERMISSIVE, mirrors_dir=mirrors)

    with fresh_store.session(write=True) as session:
        nodes.revoke_node(session, "laptop")
    plan = node_removal.delete_node(
        fresh_store, "laptop", PERMISSIVE, mirrors_dir=mirrors, dry_run=True
    )
    assert (plan.status, plan.deleted_tasks, plan.mirror_state, plan.mirror_files) == (
        "revoked",
        1,
        "removed",
        1,
    )
    assert (mirrors / node.id).is_dir()  # a dry run changes nothing

    done = node_removal.delete_node(fresh_store, "laptop", PERMISSIVE, mirrors_dir=mirrors)
    assert (done.mirror_state, done.dry_run) == ("removed", False)
    assert not (mirrors / node.id).exists()
    with fresh_store.session() as session:
        assert session.get(Node, node.id) is None
        assert session.get(Task, queued.id) is None
    assert add(fresh_store, "laptop").name == "laptop"  # the name is free again


def test_delete_of_an_offline_node_fails_its_tasks_and_can_keep_the_mirror(
    fresh_store: Store, tmp_path: Path
) -> None:
    node = add(fresh_store, "old")
    submit(fresh_store, node.id)
    (tmp_path / node.id).mkdir()
    done = node_removal.delete_node(
        fresh_store, node.id[:9], PERMISSIVE, mirrors_dir=tmp_path, keep_mirror=True
    )
    assert (done.status, done.failed_tasks, done.mirror_state) == ("offline", 1, "kept")
    assert (tmp_path / node.id).is_dir()


def test_a_cordoned_node_gets_no_new_tasks(fresh_store: Store) -> None:
    node = add(fresh_store, "n1")
    queued = submit(fresh_store, node.id)
    with fresh_store.session(write=True) as session:
        nodes.set_cordon(session, "n1", True)
    with pytest.raises(Conflict, match="cordoned.*uncordon") as err:
        submit(fresh_store, node.id)
    assert err.value.exit_code == 5
    with fresh_store.session(write=True) as session:
        row = session.get(Node, node.id)
        assert row is not None
        claimed = journal.claim_pending(
            session, row, hub_id="h", stream_id="s", defaults=PERMISSIVE
        )
        assert claimed == []
    with fresh_store.session(write=True) as session:
        nodes.set_cordon(session, "n1", False)
    with fresh_store.session(write=True) as session:
        row = session.get(Node, node.id)
        assert row is not None
        claimed = journal.claim_pending(
            session, row, hub_id="h", stream_id="s", defaults=PERMISSIVE
        )
        assert [t.id for t in claimed] == [queued.id]


# --- expiry ---------------------------------------------------------------------------------


def test_queued_tasks_expire_and_an_expired_task_is_never_dispatched(fresh_store: Store) -> None:
    node = add(fresh_store, "n1")
    keeps = submit(fresh_store, node.id)
    later = submit(fresh_store, node.id, expire_after_s=3600)
    overdue = submit(fresh_store, node.id, expire_after_s=60)
    with fresh_store.session(write=True) as session:
        row = session.get(Task, overdue.id)
        assert row is not None
        row.expires_at = clock.now() - timedelta(seconds=1)
    with fresh_store.session(write=True) as session:
        # Not yet swept: the claim itself refuses the overdue task.
        node_row = session.get(Node, node.id)
        assert node_row is not None
        claimed = journal.claim_pending(
            session, node_row, hub_id="h", stream_id="s", defaults=PERMISSIVE
        )
        assert sorted(t.id for t in claimed) == sorted([keeps.id, later.id])
    with fresh_store.session(write=True) as session:
        assert journal.expire_tasks(session, dry_run=True) == [overdue.id]
        assert journal.expire_tasks(session) == [overdue.id]
        assert journal.expire_tasks(session) == []
        ended = journal.get_task(session, overdue.id)
    assert ended.state == "expired" and "expired" in ended.error
    assert journal.wait_exit_code(ended) == 124


def test_expire_after_must_be_positive(fresh_store: Store) -> None:
    node = add(fresh_store, "n1")
    with pytest.raises(InvalidArgument, match="--expire-after"):
        submit(fresh_store, node.id, expire_after_s=0)


# --- exit codes of a wait -------------------------------------------------------------------


def _ended(state: str, exit_code: int | None) -> journal.TaskView:
    now = clock.now()
    return journal.TaskView(
        "tk_x", "nd_x", "n", state, [], "", "", 0, exit_code, "", "", False, "",
        now, None, None, now, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("state", "exit_code", "expected"),
    [
        ("succeeded", 0, 0),
        ("failed", 7, 7),
        ("failed", -9, 137),
        ("failed", None, 125),
        ("timed_out", None, 121),
        ("rejected", None, 122),
        ("cancelled", None, 123),
        ("cancelled", -15, 123),
        ("expired", None, 124),
    ],
)
def test_wait_exit_code_is_the_tasks_own_or_120_to_125(
    state: str, exit_code: int | None, expected: int
) -> None:
    assert journal.wait_exit_code(_ended(state, exit_code)) == expected


# --- mesh status --check ---------------------------------------------------------------------


def test_health_check_levels(fresh_store: Store) -> None:
    node = add(fresh_store, "n1")
    add(fresh_store, "n2")
    connect(fresh_store, node.id)
    with fresh_store.session() as session:
        warn = status.health_check(session, PERMISSIVE, status.CheckThresholds())
        assert warn.exit_code == 1 and warn.offline_nodes == ["n2"]
        assert warn.line.startswith("CORTEX WARNING - 1 node(s) offline or stale: n2")
        assert "|" in warn.line and "\n" not in warn.line
        crit = status.health_check(session, PERMISSIVE, status.CheckThresholds(crit_offline=1))
        assert crit.exit_code == 2
        ok = status.health_check(session, PERMISSIVE, status.CheckThresholds(warn_offline=2))
        assert ok.exit_code == 0 and ok.line.startswith("CORTEX OK - 1/2 nodes online")
    with fresh_store.session(write=True) as session:
        hubs.register_hub(session, "hub-dead", "x", lease_s=-1)
    with fresh_store.session() as session:
        dead = status.health_check(session, PERMISSIVE, status.CheckThresholds(warn_offline=2))
        assert dead.exit_code == 2 and dead.dead_hubs == ["hub-dead"]
        none = status.health_check(
            session, PERMISSIVE, status.CheckThresholds(crit_dead_hubs=None, min_hubs=2)
        )
        assert none.exit_code == 2 and "fewer than 2" in none.line


# --- db backup ------------------------------------------------------------------------------


def test_sqlite_backup_is_a_working_copy(tmp_path: Path) -> None:
    from cortexctl.store.engine import upgrade

    url = f"sqlite:///{tmp_path / 'cortex.db'}"
    store = Store(url)
    try:
        upgrade(store)
        add(store, "kept")
    finally:
        store.dispose()
    copy = backup_store(url, tmp_path / "copy.db")
    assert copy.size_bytes > 0
    restored = Store(f"sqlite:///{tmp_path / 'copy.db'}")
    try:
        with restored.session() as session:
            assert nodes.resolve_node(session, "kept").name == "kept"
    finally:
        restored.dispose()
    with pytest.raises(Conflict, match="--force"):
        backup_store(url, tmp_path / "copy.db")
    assert backup_store(url, tmp_path / "copy.db", force=True).path.endswith("copy.db")
    with pytest.raises(NotFound, match="no store at"):
        backup_store(f"sqlite:///{tmp_path / 'none.db'}", tmp_path / "x.db")
    assert not (tmp_path / "none.db").exists()


def test_postgresql_backup_points_at_pg_dump(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="pg_dump --format=custom") as err:
        backup_store("postgresql+psycopg://cortex:secret@db/cortex", tmp_path / "x")
    assert "secret" not in str(err.value)
    assert err.value.exit_code == 2


# --- the agent's sync record -----------------------------------------------------------------


def test_sync_paths_are_relative_to_the_workspace(tmp_path: Path) -> None:
    from cortexctl.agent.syncer import workspace_paths

    workspace = tmp_path / "ws"
    (workspace / "results").mkdir(parents=True)
    (workspace / "results" / "r.csv").write_text("1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.chdir(elsewhere)
    found, failed = workspace_paths(workspace, ["results/r.csv", str(workspace / "results")])
    assert (found, failed) == (["results/r.csv"], [])
    found, failed = workspace_paths(workspace, ["../outside"])
    assert found == [] and "outside the workspace" in failed[0].error


def test_unchanged_files_are_known_by_size_mtime_or_hash(tmp_path: Path) -> None:
    from cortexctl.agent.state import SyncedFile, SyncRecord, load_sync_record, save_sync_record
    from cortexctl.agent.syncer import _hash_file, unchanged_since

    (tmp_path / "a.txt").write_text("hello")
    info = (tmp_path / "a.txt").stat()
    known = (info.st_size, info.st_mtime_ns, _hash_file(tmp_path, "a.txt"))
    assert unchanged_since(tmp_path, "a.txt", known) == known
    os.utime(tmp_path / "a.txt", ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))
    touched = unchanged_since(tmp_path, "a.txt", known)
    assert touched is not None and touched[1] == info.st_mtime_ns + 10**9
    (tmp_path / "a.txt").write_text("HELLO")
    assert unchanged_since(tmp_path, "a.txt", known) is None
    assert unchanged_since(tmp_path, "a.txt", None) is None

    state = tmp_path / "state"
    save_sync_record(state, SyncRecord("nd_1", "hub-a", {"a.txt": SyncedFile(*known)}))
    assert (state / "sync-record.json").stat().st_mode & 0o777 == 0o600
    assert load_sync_record(state, "nd_1", "hub-a").files["a.txt"] == SyncedFile(*known)
    assert load_sync_record(state, "nd_1", "hub-b").files == {}  # another hub's mirror
