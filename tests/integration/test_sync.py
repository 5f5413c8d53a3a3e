"""SyncFile end to end: a real `cortexctl serve`, real gRPC, real agents."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from cortexctl.agent.state import Membership, save_membership
from cortexctl.agent.syncer import upload_file
from cortexctl.core.uploads import TEMP_NAME
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from cortexctl.store.engine import Store
from cortexctl.store.models import SyncLease
from tests.conftest import wait_until
from tests.helpers import CORTEXCTL, Hub, Mesh, child_env, cli_json, scrape

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SyncHub:
    hub: Hub
    data_dir: Path
    database_url: str
    metrics: str
    node_id: str = ""
    credential: str = ""

    @property
    def address(self) -> str:
        return self.hub.address

    @property
    def node_mirror(self) -> Path:
        return self.data_dir / "mirrors" / self.node_id

    def metric(self, name: str) -> float:
        return scrape(self.metrics, name)

    def leases(self) -> int:
        store = Store(self.database_url, pool_size=1)
        try:
            with store.session() as session:
                return int(session.scalar(select(func.count()).select_from(SyncLease)) or 0)
        finally:
            store.dispose()

    def temp_files(self) -> list[Path]:
        return [p for p in (self.data_dir / "mirrors").rglob("*") if TEMP_NAME.match(p.name)]

    def files(self) -> list[str]:
        root = self.node_mirror
        return (
            sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
            if root.exists()
            else []
        )


@contextlib.contextmanager
def start_sync_hub(
    tmp_path: Path, store_env: dict[str, str], home: Path, **settings: str
) -> Iterator[SyncHub]:
    env = child_env(store_env, home)
    metrics = f"127.0.0.1:{free_port()}"
    env.update({"CORTEX_METRICS_LISTEN": metrics, **settings})
    hub = Hub(tmp_path / "hub", env)
    hub.workdir.mkdir(exist_ok=True)
    hub.start()
    running = SyncHub(
        hub, Path(store_env["CORTEX_DATA_DIR"]), store_env["CORTEX_DATABASE_URL"], metrics
    )
    config = asyncio.run(handshake(hub.address, cli_json("invites", "create")["token"]))
    running.node_id, running.credential = config.node_id, config.node_credential
    try:
        yield running
    finally:
        hub.stop()


@pytest.fixture
def sync_hub(tmp_path: Path, store_env: dict[str, str], isolated_env: Path) -> Iterator[SyncHub]:
    """A hub with a 0.5 s lock wait, 2 MiB files at most, metrics on, and one joined node."""
    with start_sync_hub(
        tmp_path, store_env, isolated_env, CORTEX_LOCK_WAIT="0.5s", CORTEX_MAX_FILE_BYTES="2MiB"
    ) as hub:
        yield hub


async def handshake(address: str, token: str) -> pb.NodeConfiguration:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        config: pb.NodeConfiguration = await stub.SyncConfiguration(
            pb.SyncConfigurationRequest(invite_token=token, hostname="t", requested_name="n1")
        )
        return config


def bearer(credential: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {credential}")]


async def send(
    address: str, chunks: Sequence[pb.FileChunk], metadata: list[tuple[str, str]]
) -> tuple[grpc.StatusCode, str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        try:
            await stub.SyncFile(iter(chunks), metadata=metadata, timeout=30)
        except grpc.aio.AioRpcError as err:
            return err.code(), err.details() or ""
        return grpc.StatusCode.OK, ""


def final(
    path: str, data: bytes, offset: int = 0, sha: str | None = None, **extra: Any
) -> pb.FileChunk:
    return pb.FileChunk(
        path=path,
        offset=offset,
        data=data,
        is_final=True,
        sha256=hashlib.sha256(data).hexdigest() if sha is None else sha,
        **extra,
    )


def test_every_bad_input_gets_its_code_and_writes_nothing(
    sync_hub: SyncHub, tmp_path: Path
) -> None:
    ok = bearer(sync_hub.credential)
    data = b"payload"
    sync_hub.node_mirror.mkdir(parents=True, exist_ok=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (sync_hub.node_mirror / "escape").symlink_to(outside)
    one_mib = os.urandom(MIB)
    cases: list[tuple[str, list[pb.FileChunk], list[tuple[str, str]], grpc.StatusCode]] = [
        ("absolute", [final("/etc/x", data)], ok, grpc.StatusCode.INVALID_ARGUMENT),
        ("dotdot", [final("a/../../x", data)], ok, grpc.StatusCode.INVALID_ARGUMENT),
        ("nul", [final("a\0b", data)], ok, grpc.StatusCode.INVALID_ARGUMENT),
        ("backslash", [final("a\\b", data)], ok, grpc.StatusCode.INVALID_ARGUMENT),
        ("empty component", [final("a//b", data)], ok, grpc.StatusCode.INVALID_ARGUMENT),
        ("empty path", [final("", data)], ok, grpc.StatusCode.INVALID_ARGUMENT),
        ("too long", [final("x/" * 600, data)], ok, grpc.StatusCode.INVALID_ARGUMENT),
        ("symlink out", [final("escape/x", data)], ok, grpc.StatusCode.INVALID_ARGUMENT),
        ("first offset", [final("f1", data, offset=3)], ok, grpc.StatusCode.INVALID_ARGUMENT),
        (
            "gap",
            [pb.FileChunk(path="f2", data=b"abc"), final("", b"d", offset=4)],
            ok,
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        ("no sha", [final("f3", data, sha="")], ok, grpc.StatusCode.INVALID_ARGUMENT),
        ("no final", [pb.FileChunk(path="f4", data=data)], ok, grpc.StatusCode.INVALID_ARGUMENT),
        ("chunk too big", [final("f5", one_mib + b"x")], ok, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (
            "announced too big",
            [final("f6", data, total_size=3 * MIB)],
            ok,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),
        (
            "grew too big",
            [pb.FileChunk(path="f7", offset=i * MIB, data=one_mib) for i in range(3)],
            ok,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),
        ("sha mismatch", [final("f8", data, sha="0" * 64)], ok, grpc.StatusCode.DATA_LOSS),
        (
            "size mismatch",
            [final("f9", data, total_size=len(data) + 1)],
            ok,
            grpc.StatusCode.DATA_LOSS,
        ),
        ("no credential", [final("f10", data)], [], grpc.StatusCode.UNAUTHENTICATED),
        (
            "bad credential",
            [final("f11", data)],
            bearer("cortex-node.nd_x.nope"),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
    ]
    for name, chunks, metadata, expected in cases:
        code, details = asyncio.run(send(sync_hub.address, chunks, metadata))
        assert code == expected, f"{name}: {code} {details}"
        assert details, f"{name}: the status carries no message"
    assert sync_hub.files() == []  # (the symlink is not a file)
    assert list(outside.iterdir()) == []
    wait_until(
        lambda: not sync_hub.temp_files() and sync_hub.leases() == 0,
        15,
        "failed uploads to leave no temp file and no lease",
    )


def test_busy_path_waits_then_aborts(sync_hub: SyncHub) -> None:
    async def scenario() -> tuple[grpc.StatusCode, pb.FileSyncResult]:
        async with grpc.aio.insecure_channel(sync_hub.address) as channel:
            stub = pb_grpc.AgentOrchestratorStub(channel)
            holder = stub.SyncFile(metadata=bearer(sync_hub.credential))
            await holder.write(pb.FileChunk(path="busy.txt", data=b"12"))
            await asyncio.to_thread(
                wait_until, lambda: sync_hub.leases() == 1, 15, "the first upload to hold the path"
            )
            code, _ = await send(
                sync_hub.address, [final("busy.txt", b"other")], bearer(sync_hub.credential)
            )
            await holder.write(final("", b"34", offset=2, sha=hashlib.sha256(b"1234").hexdigest()))
            await holder.done_writing()
            return code, await holder

    code, result = asyncio.run(scenario())
    assert code == grpc.StatusCode.ABORTED
    assert result.size == 4
    assert (sync_hub.node_mirror / "busy.txt").read_bytes() == b"1234"


KILLED_CLIENT = textwrap.dedent("""
    import asyncio, sys, grpc
    from cortexctl.proto import mesh_pb2 as pb, mesh_pb2_grpc as pb_grpc
    async def main(address, credential, count):
        channel = grpc.aio.insecure_channel(address)
        stub = pb_grpc.AgentOrchestratorStub(channel)
        calls = []
        for index in range(count):
            call = stub.SyncFile(metadata=[("authorization", "Bearer " + credential)])
            await call.write(pb.FileChunk(path=f"killed/{index}", data=b"x" * 700_000))
            await call.write(pb.FileChunk(path="", offset=700_000, data=b"y" * 700_000))
            calls.append(call)
        print("ready", flush=True)
        await asyncio.sleep(600)
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
""")


async def abort_storm(address: str, credential: str, count: int, paths: int) -> None:
    """Uploads cut off at random points: client cancels, and channels closed under them."""
    rng = random.Random(3)
    metadata = bearer(credential)
    big, small = os.urandom(600_000), os.urandom(16_000)
    gate = asyncio.Semaphore(64)

    async def one(stub: Any, index: int, started: list[int] | None = None) -> None:
        async with gate:
            call = stub.SyncFile(metadata=metadata)
            path = f"storm/{index % paths}.bin"
            data = big if index % 4 == 0 else small
            try:
                # grpc.aio leaves a write hanging when its channel closes before the call
                # reached the hub; the point here is to cut uploads off mid-stream.
                await call.wait_for_connection()
                if started is not None:
                    started.append(index)
                for number in range(rng.randint(0, 3)):
                    await call.write(
                        pb.FileChunk(
                            path=path if number == 0 else "", offset=number * len(data), data=data
                        )
                    )
                if index % 10 == 0:  # a final chunk that fails verification
                    await call.write(
                        final("" if rng.random() < 0.5 else path, b"z", offset=0, sha="1" * 64)
                    )
                await asyncio.sleep(rng.random() / 100)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                pass
            call.cancel()

    cancelled = count * 3 // 4
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        await asyncio.gather(*(one(stub, i) for i in range(cancelled)))
    # The rest on channels that are closed while their uploads are mid-stream.
    for start in range(cancelled, count, 50):
        channel = grpc.aio.insecure_channel(address)
        stub = pb_grpc.AgentOrchestratorStub(channel)
        batch = range(start, min(start + 50, count))
        started: list[int] = []
        running = [asyncio.ensure_future(one(stub, i, started)) for i in batch]
        async with asyncio.timeout(30):
            while len(started) < len(batch):
                await asyncio.sleep(0.005)
        await asyncio.sleep(rng.random() / 50)
        await channel.close()
        await asyncio.gather(*running, return_exceptions=True)


async def upload_each(address: str, credential: str, paths: Sequence[str]) -> list[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        gate = asyncio.Semaphore(32)

        async def one(path: str) -> str:
            async with gate:
                code, details = await send_on(stub, [final(path, path.encode())], credential)
                return "" if code == grpc.StatusCode.OK else f"{path}: {code} {details}"

        return [e for e in await asyncio.gather(*(one(p) for p in paths)) if e]


async def send_on(
    stub: Any, chunks: Sequence[pb.FileChunk], credential: str
) -> tuple[grpc.StatusCode, str]:
    try:
        await stub.SyncFile(iter(chunks), metadata=bearer(credential), timeout=30)
    except grpc.aio.AioRpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


def test_two_thousand_aborted_uploads_leave_nothing_behind(
    tmp_path: Path, store_env: dict[str, str], isolated_env: Path
) -> None:
    # A lock wait of 0 turns any lock left behind into an immediate ABORTED below.
    with start_sync_hub(tmp_path, store_env, isolated_env, CORTEX_LOCK_WAIT="0s") as hub:
        killed = subprocess.Popen(
            [sys.executable, "-c", KILLED_CLIENT, hub.address, hub.credential, "40"],
            stdout=subprocess.PIPE,
            env=hub.hub.env,
        )
        assert killed.stdout is not None and killed.stdout.readline().strip() == b"ready"
        wait_until(
            lambda: hub.metric("cortex_uploads_in_flight") >= 40,
            15,
            "the doomed client's uploads to be in flight",
        )
        killed.send_signal(signal.SIGKILL)  # the connection dies with the process
        killed.wait()
        asyncio.run(abort_storm(hub.address, hub.credential, 1960, paths=500))

        def clean() -> bool:
            return (
                hub.metric("cortex_sync_locks") == 0
                and hub.metric("cortex_uploads_in_flight") == 0
                and hub.leases() == 0
                and not hub.temp_files()
            )

        wait_until(clean, 30, "no lock entry, lease or temp file")
        assert hub.files() == []
        paths = [f"storm/{i}.bin" for i in range(500)] + [f"killed/{i}" for i in range(40)]
        assert asyncio.run(upload_each(hub.address, hub.credential, paths)) == []
        assert len(hub.files()) == len(paths)
        wait_until(
            lambda: hub.leases() == 0 and hub.metric("cortex_sync_locks") == 0,
            15,
            "the uploads' leases to end",
        )
        assert "Traceback" not in hub.hub.log()


def upload_one(hub: SyncHub, workspace: Path, rel: str) -> None:
    async def go() -> None:
        async with grpc.aio.insecure_channel(hub.address) as channel:
            stub = pb_grpc.AgentOrchestratorStub(channel)
            await upload_file(
                stub, hub.credential, workspace, rel, max_chunk_bytes=MIB, max_file_bytes=2 * MIB
            )

    asyncio.run(go())


def test_one_byte_and_empty_files_arrive_byte_identical(sync_hub: SyncHub, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "deep" / "er").mkdir(parents=True)
    (workspace / "one").write_bytes(b"\x00")
    (workspace / "empty").write_bytes(b"")
    (workspace / "deep" / "er" / "two-chunks.bin").write_bytes(os.urandom(MIB + 7))
    for rel in ("one", "empty", "deep/er/two-chunks.bin"):
        upload_one(sync_hub, workspace, rel)
        assert (sync_hub.node_mirror / rel).read_bytes() == (workspace / rel).read_bytes()
    listed = cli_json("mirrors", "ls", "n1")
    assert [(f["path"], f["size"]) for f in listed["files"]] == [
        ("deep/er/two-chunks.bin", MIB + 7),
        ("empty", 0),
        ("one", 1),
    ]


@pytest.mark.slow
def test_256_mib_file_through_agent_sync(
    tmp_path: Path, store_env: dict[str, str], isolated_env: Path
) -> None:
    with start_sync_hub(tmp_path, store_env, isolated_env) as hub:
        workspace, state = tmp_path / "ws", tmp_path / "state"
        workspace.mkdir()
        save_membership(state, Membership(hub.address, hub.node_id, hub.credential))
        digest = hashlib.sha256()
        with (workspace / "big.bin").open("wb") as handle:
            block = os.urandom(MIB)
            for index in range(256):
                chunk = block[index:] + block[:index]  # no two MiB alike
                digest.update(chunk)
                handle.write(chunk)
        done = subprocess.run(
            [
                *CORTEXCTL,
                "agent",
                "sync",
                str(workspace / "big.bin"),
                "--hub",
                hub.address,
                "--workspace",
                str(workspace),
                "--state-dir",
                str(state),
                "--json",
            ],
            env=hub.hub.env,
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr.decode()
        report = json.loads(done.stdout)
        assert report["uploaded"][0]["sha256"] == digest.hexdigest()
        mirrored = hashlib.sha256()
        with (hub.node_mirror / "big.bin").open("rb") as handle:
            while block := handle.read(4 * MIB):
                mirrored.update(block)
        assert mirrored.hexdigest() == digest.hexdigest()


def test_agent_sync_reports_failures(sync_hub: SyncHub, tmp_path: Path) -> None:
    workspace, state = tmp_path / "ws", tmp_path / "state"
    workspace.mkdir()
    save_membership(state, Membership(sync_hub.address, sync_hub.node_id, sync_hub.credential))
    (workspace / "ok.txt").write_text("fine")
    (workspace / "link").symlink_to(workspace / "ok.txt")
    (workspace / "huge").write_bytes(b"x" * (3 * MIB))
    done = subprocess.run(
        [
            *CORTEXCTL,
            "agent",
            "sync",
            "ok.txt",
            "link",
            "huge",
            "missing",
            "--hub",
            sync_hub.address,
            "--workspace",
            ".",
            "--state-dir",
            str(state),
        ],
        env=sync_hub.hub.env,
        capture_output=True,
        timeout=60,
        cwd=workspace,
    )
    assert done.returncode == 1
    stderr = done.stderr.decode()
    assert "uploaded ok.txt" in done.stdout.decode()
    for name in ("link", "huge", "missing"):
        assert f"failed {name}" in stderr
    assert sync_hub.files() == ["ok.txt"]


def test_agent_with_sync_mirrors_new_and_changed_files(mesh: Mesh) -> None:
    workspace = mesh.workspace("n1")
    workspace.mkdir(parents=True)
    (workspace / "a.txt").write_text("one")
    (workspace / "empty").write_bytes(b"")
    (workspace / "sub").mkdir()
    (workspace / "sub" / "b.bin").write_bytes(os.urandom(3000))
    (workspace / "link").symlink_to("/etc/hostname")
    mesh.start_agent("n1", mesh.invite(), "--sync", "--sync-interval", "0.2s")
    node_id = mesh.node("n1")["id"]
    mirror = Path(mesh.env["CORTEX_DATA_DIR"]) / "mirrors" / node_id

    def mirrored() -> dict[str, bytes]:
        return (
            {str(p.relative_to(mirror)): p.read_bytes() for p in mirror.rglob("*") if p.is_file()}
            if mirror.exists()
            else {}
        )

    def same() -> bool:
        want = {
            str(p.relative_to(workspace)): p.read_bytes()
            for p in workspace.rglob("*")
            if p.is_file() and not p.is_symlink()
        }
        return mirrored() == want

    wait_until(same, 20, "the workspace to be mirrored")
    assert "link" not in mirrored()
    (workspace / "a.txt").write_text("two, longer")
    (workspace / "sub" / "c.txt").write_text("new")
    wait_until(same, 20, "changes to be mirrored")
    assert "Traceback" not in mesh.agents[0].log()


# --- in-process: the servicer built directly, its lock registry looked at --------------------


@dataclass
class InProcessHub:
    runtime: Any
    handler: Any
    server: Any
    address: str
    credential: str
    mirrors: Path


async def start_in_process(store: Store, data_dir: Path, lock_wait_s: float) -> InProcessHub:
    from cortexctl.core import invites, nodes
    from cortexctl.hub.auth import CredentialCache
    from cortexctl.hub.executor import StoreExecutor
    from cortexctl.hub.interceptors import ErrorMappingInterceptor
    from cortexctl.hub.runtime import HubOptions, HubRuntime
    from cortexctl.hub.servicer import AgentOrchestrator
    from cortexctl.hub.streams import StreamRegistry
    from cortexctl.hub.sync_files import SyncFileHandler

    with store.session(write=True) as session:
        token = invites.create_invite(session, ttl_s=60).token
        credential = nodes.join_with_invite(
            session,
            token,
            hostname="h",
            requested_name="n1",
            agent_version="t",
            labels={},
            capabilities=[],
        ).credential
    options = HubOptions(
        hub_id="hub_inproc", lock_wait_s=lock_wait_s, mirrors_dir=data_dir / "mirrors"
    )
    executor = StoreExecutor(store, workers=4)
    runtime = HubRuntime(
        options=options,
        executor=executor,
        streams=StreamRegistry("hub_inproc", 5.0),
        credentials=CredentialCache(executor, 5.0),
    )
    handler = SyncFileHandler(runtime)
    server = grpc.aio.server(interceptors=[ErrorMappingInterceptor()])
    pb_grpc.add_AgentOrchestratorServicer_to_server(
        AgentOrchestrator(runtime, sync_files=handler), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return InProcessHub(
        runtime, handler, server, f"127.0.0.1:{port}", credential, data_dir / "mirrors"
    )


async def settle(hub: InProcessHub) -> None:
    """Wait (with a deadline) until no upload runs and every clean-up has finished."""
    async with asyncio.timeout(30):
        while hub.handler.in_flight or hub.runtime._background:
            await asyncio.sleep(0.01)


def lease_count(store: Store) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(SyncLease)) or 0)


def test_in_process_registry_empties_after_aborted_uploads(
    fresh_store: Store, data_dir: Path
) -> None:
    async def scenario() -> None:
        hub = await start_in_process(fresh_store, data_dir, lock_wait_s=0)
        try:
            await abort_storm(hub.address, hub.credential, 600, paths=100)
            await settle(hub)
            assert len(hub.runtime.sync_locks) == 0
            assert hub.runtime.sync_locks.waiting() == 0
            assert lease_count(fresh_store) == 0
            assert not [p for p in hub.mirrors.rglob("*") if TEMP_NAME.match(p.name)]
            # With a lock wait of 0 any lock left behind would answer ABORTED at once.
            paths = [f"storm/{i}.bin" for i in range(100)]
            assert await upload_each(hub.address, hub.credential, paths) == []
            await settle(hub)
            assert len(hub.runtime.sync_locks) == 0 and lease_count(fresh_store) == 0
        finally:
            await hub.server.stop(0)
            hub.runtime.executor.shutdown()

    asyncio.run(scenario())


def test_hub_shutdown_mid_upload_releases_everything(fresh_store: Store, data_dir: Path) -> None:
    async def scenario() -> None:
        hub = await start_in_process(fresh_store, data_dir, lock_wait_s=5)
        channel = grpc.aio.insecure_channel(hub.address)
        stub = pb_grpc.AgentOrchestratorStub(channel)
        calls = []
        for index in range(20):
            call = stub.SyncFile(metadata=bearer(hub.credential))
            await call.write(pb.FileChunk(path=f"open/{index}", data=os.urandom(MIB)))
            await call.write(pb.FileChunk(offset=MIB, data=b"more"))
            calls.append(call)
        async with asyncio.timeout(30):
            while lease_count(fresh_store) < 20 or len(list(hub.mirrors.rglob("*.tmp"))) < 20:
                await asyncio.sleep(0.02)
        assert len(hub.runtime.sync_locks) == 20
        hub.runtime.draining = True
        await hub.server.stop(0)  # cancels every upload in progress
        await hub.runtime.drain_background(timeout=30)
        assert len(hub.runtime.sync_locks) == 0
        assert lease_count(fresh_store) == 0
        assert not list(hub.mirrors.rglob("*.tmp"))
        assert not [p for p in hub.mirrors.rglob("*") if p.is_file()]
        for call in calls:
            call.cancel()
        await channel.close()
        hub.runtime.executor.shutdown()

    asyncio.run(scenario())
