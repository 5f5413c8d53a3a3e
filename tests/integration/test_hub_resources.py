"""Resource isolation on the hub: mirror quotas, the free-space reserve, `mirrors rm`."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cortexctl.proto import mesh_pb2 as pb
from tests.conftest import wait_until
from tests.helpers import cli_json, run_cli
from tests.integration.test_sync import SyncHub, bearer, final, send, start_sync_hub

pytestmark = pytest.mark.integration
KIB = 1024


@pytest.fixture
def quota_hub(tmp_path: Path, store_env: dict[str, str], isolated_env: Path) -> Iterator[SyncHub]:
    with start_sync_hub(tmp_path, store_env, isolated_env, CORTEX_LOCK_WAIT="0.5s") as hub:
        yield hub


def upload(hub: SyncHub, chunks: list[pb.FileChunk]) -> tuple[grpc.StatusCode, str]:
    return asyncio.run(send(hub.address, chunks, bearer(hub.credential)))


def chunked(path: str, data: bytes, size: int, announce: bool) -> list[pb.FileChunk]:
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    chunks = [
        pb.FileChunk(path=path, offset=i * size, data=piece) for i, piece in enumerate(pieces)
    ]
    chunks[-1].is_final = True
    chunks[-1].sha256 = hashlib.sha256(data).hexdigest()
    if announce:
        chunks[0].total_size = len(data)
    return chunks


def mirror_usage(node: str) -> dict[str, int]:
    return dict(cli_json("nodes", "show", node)["mirror"])


def test_quota_in_bytes_and_files_refuses_uploads_and_writes_nothing(quota_hub: SyncHub) -> None:
    hub = quota_hub
    quota = cli_json("nodes", "quota", "n1", "--bytes", "100KiB", "--files", "3")
    assert (quota["quota_bytes"], quota["quota_files"]) == (100 * KIB, 3)
    assert upload(hub, [final("a.bin", b"a" * 60 * KIB)])[0] == grpc.StatusCode.OK
    wait_until(lambda: mirror_usage("n1")["used_bytes"] == 60 * KIB, 10, "usage counted")
    # Announced: refused up front, the message names the quota.
    code, details = upload(hub, chunked("b.bin", b"b" * 60 * KIB, 16 * KIB, announce=True))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert "mirror quota of 100 KiB" in details
    # Not announced: refused as the bytes arrive.
    code, details = upload(hub, chunked("c.bin", b"c" * 60 * KIB, 16 * KIB, announce=False))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert "quota" in details
    # Replacing a file is charged only the difference.
    assert upload(hub, [final("a.bin", b"A" * 90 * KIB)])[0] == grpc.StatusCode.OK
    assert upload(hub, [final("d.txt", b"d")])[0] == grpc.StatusCode.OK
    assert upload(hub, [final("e.txt", b"e")])[0] == grpc.StatusCode.OK
    code, details = upload(hub, [final("f.txt", b"f")])
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "mirror quota of 3 files" in details
    # (a refused upload's temp file is removed just after the answer)
    wait_until(lambda: not hub.temp_files(), 10, "refused uploads to leave no temp file")
    assert hub.files() == ["a.bin", "d.txt", "e.txt"]
    usage = mirror_usage("n1")
    assert (usage["used_bytes"], usage["used_files"]) == (90 * KIB + 2, 3)
    shown = run_cli("nodes", "show", "n1")
    assert "100 KiB, 3 files" in shown.stdout and "90.0 KiB in 3 file(s)" in shown.stdout
    # `mirrors rm` gives the room back; the next upload fits.
    removed = cli_json("mirrors", "rm", "n1", "a.bin", "--yes")
    assert (removed["files"], removed["bytes"]) == (1, 90 * KIB)
    assert upload(hub, [final("f.txt", b"f")])[0] == grpc.StatusCode.OK
    wait_until(lambda: mirror_usage("n1")["used_files"] == 3, 10, "usage after rm")
    # --clear goes back to the hub default (no limit here).
    cleared = cli_json("nodes", "quota", "n1", "--clear")
    assert (cleared["quota_bytes"], cleared["quota_files"], cleared["quota_configured"]) == (
        0,
        0,
        False,
    )
    # (a hub reads a node's quota at most once a second)
    wait_until(
        lambda: upload(hub, [final("g.txt", b"g" * 200 * KIB)])[0] == grpc.StatusCode.OK,
        10,
        "the cleared quota to apply",
    )


def test_hub_wide_default_quota_applies_to_nodes_without_their_own(
    tmp_path: Path, store_env: dict[str, str], isolated_env: Path
) -> None:
    with start_sync_hub(tmp_path, store_env, isolated_env, CORTEX_QUOTA_FILES="1") as hub:
        assert upload(hub, [final("one", b"1")])[0] == grpc.StatusCode.OK
        code, details = upload(hub, [final("two", b"2")])
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "mirror quota of 1 files" in details
        wait_until(lambda: not hub.temp_files(), 10, "the refused upload to leave no temp file")
        assert hub.files() == ["one"]


def test_uploads_are_refused_while_free_space_is_below_the_reserve(
    tmp_path: Path, store_env: dict[str, str], isolated_env: Path
) -> None:
    # A reserve larger than any disk here: the file system is "full" for uploads.
    env = {"CORTEX_FREE_SPACE_RESERVE": "1000000GiB"}
    with start_sync_hub(tmp_path, store_env, isolated_env, **env) as hub:
        code, details = upload(hub, [final("x.bin", b"x" * 1000)])
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "free space is below the reserve" in details
        wait_until(lambda: not hub.temp_files(), 10, "the refused upload to leave no temp file")
        assert hub.files() == []
        # Admin commands still work.
        assert cli_json("invites", "create")["token"]
        assert cli_json("nodes", "revoke", "n1", "--yes")["revoked"] is True


def test_mirrors_rm_is_confined_and_has_a_dry_run(quota_hub: SyncHub, tmp_path: Path) -> None:
    hub = quota_hub
    for path in ("keep.txt", "logs/a.log", "logs/deep/b.log"):
        assert upload(hub, [final(path, b"x" * 10)])[0] == grpc.StatusCode.OK
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("v")
    (hub.node_mirror / "link").symlink_to(outside)
    for bad in ("../x", "/etc/passwd", "link/victim", "a//b"):
        result = run_cli("mirrors", "rm", "n1", bad)
        assert result.exit_code == 2, (bad, result.stderr)
    assert run_cli("mirrors", "rm", "n1", "nope").exit_code == 3
    dry = cli_json("mirrors", "rm", "n1", "logs", "--dry-run")
    assert (dry["files"], dry["dry_run"]) == (2, True)
    refused = run_cli("mirrors", "rm", "n1", "logs")  # off a terminal: only with --yes
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert hub.files() == ["keep.txt", "logs/a.log", "logs/deep/b.log"]
    wait_until(lambda: mirror_usage("n1")["used_files"] == 3, 10, "usage counted")
    assert cli_json("mirrors", "rm", "n1", "logs", "link", "--yes")["files"] == 2
    assert (outside / "victim").exists()
    assert hub.files() == ["keep.txt"]
    assert mirror_usage("n1")["used_files"] == 1
    whole = cli_json("mirrors", "rm", "n1", "--yes")
    assert whole["files"] == 1 and not hub.node_mirror.exists()
    assert (mirror_usage("n1")["used_bytes"], mirror_usage("n1")["used_files"]) == (0, 0)
