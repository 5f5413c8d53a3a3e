"""A node fills the hub's disk: uploads stop at the free-space reserve, and every admin
command still works on the "full" disk, the SQLite store on it included."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.helpers import Hub, Mesh, child_env, cli_json, run_cli

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs mounted for this test (root only), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        message = f"cannot mount a tmpfs (needs root): {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def free_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def test_a_node_filling_the_disk_is_stopped_and_the_operator_keeps_control(
    small_disk: Path, tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = small_disk / "data"
    store = {
        "CORTEX_DATA_DIR": str(data),
        "CORTEX_DATABASE_URL": f"sqlite:///{data / 'cortex.db'}",  # on the same file system
    }
    for key, value in store.items():
        monkeypatch.setenv(key, value)
    env = child_env(store, isolated_env)
    hub = Hub(tmp_path / "hub", env)
    hub.workdir.mkdir()
    hub.start()
    mesh = Mesh(tmp_path, env, hub)
    try:
        workspace = mesh.workspace("filler")
        workspace.mkdir(parents=True)
        for index in range(24):  # 96 MiB for a 64 MiB disk
            (workspace / f"f{index:02}.bin").write_bytes(os.urandom(4 * MIB))
        agent = mesh.start_agent(
            "filler", mesh.invite(), "--sync", "--sync-interval", "0.5s", wait_online=True
        )
        wait_until(
            lambda: "free space is below the reserve" in agent.log(),
            60,
            "the hub to refuse uploads at its free-space reserve",
        )
        reserve = int(64 * MIB * 0.05)
        # The reserve held: the node could not take the store's room.
        assert free_bytes(small_disk) >= reserve - MIB, free_bytes(small_disk)
        used = cli_json("nodes", "show", "filler")["mirror"]
        assert used["used_files"] >= 10

        # Every admin command works on the full disk.
        assert cli_json("nodes", "sandbox", "filler", "--strict", "--allow", "echo")
        submitted = run_cli("tasks", "submit", "filler", "--wait", "--", "echo", "still here")
        assert submitted.exit_code == 0, submitted.stderr
        assert "still here" in submitted.stdout
        assert cli_json("invites", "create", "--ttl", "1h")["token"]
        revoked = cli_json("nodes", "revoke", "filler", "--yes")
        assert revoked["revoked"] is True
        agent.wait(60)  # the revoked agent is refused and exits
        first = cli_json("mirrors", "ls", "filler")["files"][0]
        removed = cli_json("mirrors", "rm", "filler", first["path"], "--yes")
        assert (removed["files"], removed["bytes"]) == (1, first["size"])
        wait_until(
            lambda: (
                cli_json("gc", "mirrors")["removed_files"] > 0
                or not (data / "mirrors" / revoked["id"]).exists()
            ),
            30,
            "gc mirrors to remove the revoked node's mirror",
        )
        assert not (data / "mirrors" / revoked["id"]).exists()
        assert cli_json("nodes", "show", "filler")["mirror"]["used_bytes"] == 0
        assert free_bytes(small_disk) > 40 * MIB
        # A new node joins and uploads once there is room again.
        fresh = mesh.workspace("fresh")
        fresh.mkdir(parents=True)
        (fresh / "after.bin").write_bytes(os.urandom(MIB))
        mesh.start_agent("fresh", mesh.invite(), "--sync", "--sync-interval", "0.5s")
        wait_until(
            lambda: (
                [f["path"] for f in cli_json("mirrors", "ls", "fresh")["files"]] == ["after.bin"]
            ),
            60,
            "the new node's upload",
        )
        fresh_id = cli_json("nodes", "show", "fresh")["id"]
        assert (data / "mirrors" / fresh_id / "after.bin").read_bytes() == (
            fresh / "after.bin"
        ).read_bytes()
    finally:
        mesh.close()
    with sqlite3.connect(data / "cortex.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
