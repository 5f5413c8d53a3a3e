"""Random and hostile SyncFile paths and offsets against a live hub: every upload either
lands inside the node's mirror or is refused INVALID_ARGUMENT; nothing escapes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cortexctl.proto import mesh_pb2 as pb
from tests.integration.test_sync import SyncHub, bearer, final, send, start_sync_hub

pytestmark = pytest.mark.integration

HOSTILE = st.sampled_from(
    [
        "../x",
        "a/../../x",
        "/etc/passwd",
        "a//b",
        "a/./b",
        "a\\b",
        "a\0b",
        "",
        ".",
        "..",
        "link/escape",
        "x" * 300,
        "/".join(["d"] * 200),
        "ok/inside.txt",
        "é/ü.txt",
    ]
)
PATHS = HOSTILE | st.text(alphabet=st.sampled_from("ab./\\\0é "), max_size=12)


@pytest.fixture
def hub(tmp_path: Path, store_env: dict[str, str], isolated_env: Path) -> Iterator[SyncHub]:
    with start_sync_hub(tmp_path, store_env, isolated_env) as running:
        # A symlink inside the mirror that leads out of it.
        running.node_mirror.mkdir(parents=True, exist_ok=True)
        os.symlink(tmp_path, running.node_mirror / "link")
        yield running


def outside_files(root: Path, mirror: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and mirror not in p.parents}


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(path=PATHS)
def test_every_path_lands_inside_the_mirror_or_is_refused(hub: SyncHub, path: str) -> None:
    root = hub.data_dir.parent
    before = outside_files(root, hub.node_mirror)
    code, details = asyncio.run(send(hub.address, [final(path, b"x")], bearer(hub.credential)))
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), (path, code, details)
    if code == grpc.StatusCode.OK:
        landed = (hub.node_mirror / path).resolve()
        assert hub.node_mirror.resolve() in landed.parents
        assert landed.read_bytes() == b"x"
    else:
        assert details
    assert outside_files(root, hub.node_mirror) - before <= {
        p for p in root.rglob("*") if p.suffix in (".db-wal", ".db-shm", ".log", ".json")
    }


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(offset=st.integers(1, 2**64 - 1), data=st.binary(max_size=64))
def test_non_contiguous_offsets_are_refused(hub: SyncHub, offset: int, data: bytes) -> None:
    chunks = [
        pb.FileChunk(path="offsets.bin", data=b"abc"),
        pb.FileChunk(offset=offset + 3 if offset + 3 < 2**64 else 1, data=data),
    ]
    code, _ = asyncio.run(send(hub.address, chunks, bearer(hub.credential)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert not (hub.node_mirror / "offsets.bin").exists()
