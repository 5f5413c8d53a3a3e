"""File records of the mirrors: written when an upload completes, removed with the file by
`mirrors rm`, `gc mirrors` and `nodes delete`; `mirrors ls` reads them. A real hub on
each store (one hub here; several hubs are tests/integration/test_multihub.py)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cortexctl.core import clock, hubs, mirrors
from cortexctl.store.engine import Store
from tests.conftest import wait_until
from tests.helpers import cli_json, run_cli
from tests.integration.test_hub_resources import upload
from tests.integration.test_sync import SyncHub, final, start_sync_hub

pytestmark = pytest.mark.integration


@pytest.fixture
def hub(tmp_path: Path, store_env: dict[str, str], isolated_env: Path) -> Iterator[SyncHub]:
    with start_sync_hub(tmp_path, store_env, isolated_env) as running:
        yield running


def listed(node: str = "n1") -> dict[str, dict[str, Any]]:
    return {item["path"]: item for item in cli_json("mirrors", "ls", node)["files"]}


def add_records(hub: SyncHub, *records: mirrors.FileRecord) -> None:
    store = Store(hub.database_url, pool_size=1)
    try:
        with store.session(write=True) as session:
            mirrors.record_files(session, list(records))
    finally:
        store.dispose()


def stopped_hub(hub: SyncHub, hub_id: str) -> None:
    store = Store(hub.database_url, pool_size=1)
    try:
        with store.session(write=True) as session:
            hubs.register_hub(session, hub_id, "127.0.0.1:9")
            hubs.stop_hub(session, hub_id)
    finally:
        store.dispose()


def test_uploads_are_recorded_and_rm_removes_their_records(hub: SyncHub) -> None:
    data = {"a.txt": b"alpha", "dir/b.bin": os.urandom(3000), "dir/c.bin": b"c"}
    for path, body in data.items():
        assert upload(hub, [final(path, body)])[0] == grpc.StatusCode.OK
    files = wait_until(lambda: len(listed()) == 3 and listed(), 15, "three file records")
    for path, body in data.items():
        assert files[path]["size"] == len(body)
        assert files[path]["sha256"] == hashlib.sha256(body).hexdigest()
        assert (files[path]["hub_id"], files[path]["hub_state"]) == (hub.hub.hub_id, "live")
    table = run_cli("mirrors", "ls", "n1")
    assert table.exit_code == 0 and "HUB" in table.stdout and hub.hub.hub_id in table.stdout
    # A new upload of a path replaces its record.
    assert upload(hub, [final("a.txt", b"alpha, again")])[0] == grpc.StatusCode.OK
    wait_until(lambda: listed()["a.txt"]["size"] == 12, 15, "the record replaced")

    removed = cli_json("mirrors", "rm", "n1", "dir/b.bin", "--yes")
    assert removed["files_removed"] == 1
    assert set(listed()) == {"a.txt", "dir/c.bin"}
    assert cli_json("mirrors", "rm", "n1", "dir", "--yes")["files_removed"] == 1
    assert set(listed()) == {"a.txt"}

    # A file another hub holds on its own disk is not this host's to remove.
    add_records(hub, mirrors.FileRecord(hub.node_id, "far.txt", 3, "0" * 64, "hub_elsewhere"))
    far = run_cli("mirrors", "rm", "n1", "far.txt", "--yes")
    assert far.exit_code == 3
    assert "hub_elsewhere" in far.stderr and "on that hub's host" in far.stderr
    whole = cli_json("mirrors", "rm", "n1", "--yes")
    assert whole["files_removed"] == 1 and whole["held_elsewhere"] == {"hub_elsewhere": 1}
    assert set(listed()) == {"far.txt"}
    assert listed()["far.txt"]["hub_state"] == "unknown"


def test_gc_mirrors_keeps_the_records_in_line_with_the_disk(hub: SyncHub) -> None:
    assert upload(hub, [final("kept.txt", b"kept")])[0] == grpc.StatusCode.OK
    assert upload(hub, [final("lost.txt", b"lost")])[0] == grpc.StatusCode.OK
    wait_until(lambda: set(listed()) == {"kept.txt", "lost.txt"}, 15, "two records")
    # A file from before records began (or whose record a crash lost), and one removed
    # from the disk behind the hub's back.
    old = hub.node_mirror / "old" / "from-before.txt"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"older")
    past = clock.now().timestamp() - 3600
    os.utime(old, (past, past))
    (hub.node_mirror / "lost.txt").unlink()
    # Records of a hub that is down (kept: its disk may come back) and of one the store no
    # longer knows (dropped).
    stopped_hub(hub, "hub_down")
    add_records(
        hub,
        mirrors.FileRecord(hub.node_id, "down.txt", 1, "1" * 64, "hub_down"),
        mirrors.FileRecord(hub.node_id, "gone.txt", 1, "2" * 64, "hub_forgotten"),
    )
    dry = cli_json("gc", "mirrors", "--dry-run")
    assert dry["records"]["added"] == 1 and dry["records"]["removed"] == 1
    assert dry["records"]["on_hubs_down"] == {"hub_down": 1}
    assert dry["records"]["forgotten_hubs"] == {"hub_forgotten": 1}
    assert set(listed()) == {"kept.txt", "lost.txt", "down.txt", "gone.txt"}
    text = run_cli("gc", "mirrors")
    assert text.exit_code == 0 and "hub_down is down" in text.stderr
    files = listed()
    assert set(files) == {"kept.txt", "old/from-before.txt", "down.txt"}
    adopted = files["old/from-before.txt"]
    assert (adopted["size"], adopted["sha256"], adopted["hub_id"]) == (5, "", hub.hub.hub_id)
    assert files["down.txt"]["hub_state"] == "stopped"
    again = cli_json("gc", "mirrors")["records"]
    assert (again["added"], again["removed"], again["forgotten_hubs"]) == (0, 0, {})

    # A revoked node's mirror goes with its records (those of this host's hubs).
    cli_json("nodes", "revoke", "n1", "--yes")
    done = cli_json("gc", "mirrors")
    assert [(n["node_id"], n["reason"]) for n in done["nodes"]] == [(hub.node_id, "revoked")]
    assert set(listed()) == {"down.txt"}


def test_node_delete_removes_its_files_and_records(hub: SyncHub) -> None:
    assert upload(hub, [final("x/y.txt", b"why")])[0] == grpc.StatusCode.OK
    wait_until(lambda: set(listed()) == {"x/y.txt"}, 15, "the record")
    cli_json("nodes", "revoke", "n1", "--yes")
    wait_until(
        lambda: run_cli("nodes", "delete", "n1", "--yes").exit_code == 0, 15, "the node offline"
    )
    assert not hub.node_mirror.exists()
    result = run_cli("mirrors", "ls", hub.node_id)
    assert result.exit_code == 3  # no node, no folder, no record: nothing to list
