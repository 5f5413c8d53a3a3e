"""Uploads across hubs on one PostgreSQL store (issue 11): the per-path lock is a store
lease, so the same path uploaded via two hubs at once has one winner; the file records make
`mirrors ls` complete from any host; a hub killed mid-upload has its lease released by the
dead-hub sweep. Real hubs, real gRPC, each hub with its own disk (data dir)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import select

from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from cortexctl.store.engine import Store
from cortexctl.store.models import SyncLease
from tests.conftest import wait_until
from tests.helpers import Hub, cli_json, run_cli
from tests.integration.test_multihub import hubs_on_pg, start_together  # noqa: F401
from tests.integration.test_sync import bearer, final, handshake, send

pytestmark = pytest.mark.integration


def lease_holders(url: str) -> list[str]:
    """The hub of each upload lease in the store."""
    store = Store(url, pool_size=1)
    try:
        with store.session() as session:
            return list(session.scalars(select(SyncLease.hub_id)))
    finally:
        store.dispose()


def mirror_of(hub: Hub, node_id: str) -> Path:
    return hub.workdir / "data" / "mirrors" / node_id


def two_hubs(hubs_on_pg: Any, wait_a: str, wait_b: str) -> tuple[Hub, Hub]:  # noqa: F811
    """Two hubs on one store, each with its own disk and lock wait (sync.lock_wait)."""
    made = hubs_on_pg(2)
    for hub, wait in zip(made, (wait_a, wait_b), strict=True):
        hub.env["CORTEX_LOCK_WAIT"] = wait
    start_together(made)
    return made[0], made[1]


def join(hub: Hub) -> tuple[str, str]:
    config = asyncio.run(handshake(hub.address, cli_json("invites", "create")["token"]))
    return config.node_id, config.node_credential


async def held_upload(
    address: str, credential: str, path: str, body: bytes, release: asyncio.Event
) -> tuple[grpc.StatusCode, str]:
    """Send the first half of ``body``, wait for ``release``, then the rest."""
    half = len(body) // 2

    async def chunks() -> AsyncIterator[pb.FileChunk]:
        yield pb.FileChunk(path=path, data=body[:half], total_size=len(body))
        await release.wait()
        yield final("", body[half:], offset=half, sha=hashlib.sha256(body).hexdigest())

    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        try:
            await stub.SyncFile(chunks(), metadata=bearer(credential), timeout=60)
        except grpc.aio.AioRpcError as err:
            return err.code(), err.details() or ""
        return grpc.StatusCode.OK, ""


async def hold(
    hub: Hub, credential: str, path: str, body: bytes, url: str
) -> tuple[asyncio.Event, asyncio.Future[tuple[grpc.StatusCode, str]]]:
    """Start an upload via ``hub`` and return once it holds the path's store lease."""
    release = asyncio.Event()
    call = asyncio.ensure_future(held_upload(hub.address, credential, path, body, release))
    await asyncio.to_thread(
        wait_until, lambda: lease_holders(url) == [hub.hub_id], 15, f"{hub.hub_id} to hold {path}"
    )
    return release, call


def test_same_path_via_two_hubs_at_once_has_one_winner(
    hubs_on_pg: Any,  # noqa: F811
    pg_url: str,
) -> None:
    hub_a, hub_b = two_hubs(hubs_on_pg, "0.5s", "0.5s")
    node_id, credential = join(hub_a)
    bodies = {hub_a.hub_id: b"A" * 300_000, hub_b.hub_id: b"B" * 300_000}

    async def race() -> dict[str, tuple[grpc.StatusCode, str]]:
        release = asyncio.Event()
        calls = {
            hub.hub_id: asyncio.ensure_future(
                held_upload(hub.address, credential, "race.bin", bodies[hub.hub_id], release)
            )
            for hub in (hub_a, hub_b)
        }
        # The loser gives up after its 0.5 s lock wait while the winner holds the path.
        done, _ = await asyncio.wait(calls.values(), return_when=asyncio.FIRST_COMPLETED)
        release.set()
        return {hub_id: await call for hub_id, call in calls.items()}

    outcomes = asyncio.run(race())
    codes = sorted(code.name for code, _ in outcomes.values())
    assert codes == ["ABORTED", "OK"], outcomes
    winner = next(hub for hub in (hub_a, hub_b) if outcomes[hub.hub_id][0] == grpc.StatusCode.OK)
    loser = hub_b if winner is hub_a else hub_a
    message = outcomes[loser.hub_id][1]
    assert f"via hub {winner.hub_id}" in message and "retry once that upload ends" in message
    assert (mirror_of(winner, node_id) / "race.bin").read_bytes() == bodies[winner.hub_id]
    assert not (mirror_of(loser, node_id) / "race.bin").exists()
    assert send_ok(loser, credential, "race.bin", b"after")  # free once the winner is done
    assert (mirror_of(loser, node_id) / "race.bin").read_bytes() == b"after"
    assert (mirror_of(winner, node_id) / "race.bin").read_bytes() == bodies[winner.hub_id]
    wait_until(lambda: lease_holders(pg_url) == [], 15, "every lease released")


def test_an_upload_via_another_hub_waits_its_turn_and_ls_shows_both_hubs(
    hubs_on_pg: Any,  # noqa: F811
    pg_url: str,
) -> None:
    winner, loser = two_hubs(hubs_on_pg, "0.5s", "30s")
    node_id, credential = join(winner)

    async def in_turn() -> tuple[tuple[grpc.StatusCode, str], tuple[grpc.StatusCode, str]]:
        release, first = await hold(winner, credential, "turn.bin", b"1" * 1000, pg_url)
        loop = asyncio.get_running_loop()
        loop.call_later(1.0, release.set)  # the second claims while the first holds
        second = await send(loser.address, [final("turn.bin", b"2" * 1000)], bearer(credential))
        return await first, second

    first, second = asyncio.run(in_turn())
    assert (first[0], second[0]) == (grpc.StatusCode.OK, grpc.StatusCode.OK), (first, second)
    assert (mirror_of(loser, node_id) / "turn.bin").read_bytes() == b"2" * 1000

    # `mirrors ls` (here the CLI, on no hub's disk) lists the files of both hubs, by hub.
    assert send_ok(winner, credential, "only-a.txt", b"a")
    assert send_ok(loser, credential, "only-b.txt", b"b")

    def files() -> dict[str, Any]:
        return {f["path"]: f for f in cli_json("mirrors", "ls", node_id)["files"]}

    wait_until(lambda: len(files()) == 3, 15, "three file records")
    listed = files()
    assert listed["turn.bin"]["hub_id"] == loser.hub_id  # the later upload's record
    assert listed["turn.bin"]["sha256"] == hashlib.sha256(b"2" * 1000).hexdigest()
    assert listed["only-a.txt"]["hub_id"] == winner.hub_id
    assert listed["only-b.txt"]["hub_id"] == loser.hub_id
    table = run_cli("mirrors", "ls", node_id)
    assert table.exit_code == 0 and winner.hub_id in table.stdout and loser.hub_id in table.stdout
    wait_until(lambda: lease_holders(pg_url) == [], 15, "every lease released")


def send_ok(hub: Hub, credential: str, path: str, body: bytes) -> bool:
    code, details = asyncio.run(send(hub.address, [final(path, body)], bearer(credential)))
    assert code == grpc.StatusCode.OK, details
    return True


def test_hub_killed_mid_upload_frees_the_path_for_the_other_hub(
    hubs_on_pg: Any,  # noqa: F811
    pg_url: str,
) -> None:
    hub_a, hub_b = two_hubs(hubs_on_pg, "0.5s", "0.5s")
    node_id, credential = join(hub_a)

    async def killed() -> tuple[grpc.StatusCode, str]:
        release, call = await hold(hub_a, credential, "half.bin", b"h" * 400_000, pg_url)
        # Hub B refuses the path while A holds it.
        busy = await send(hub_b.address, [final("half.bin", b"b")], bearer(credential))
        assert busy[0] == grpc.StatusCode.ABORTED, busy
        hub_a.kill()  # kill -9, mid-upload
        release.set()
        return await call

    code, _ = asyncio.run(killed())
    assert code != grpc.StatusCode.OK
    # The survivor's dead-hub sweep recovers A once its 2 s lease lapses, and releases the
    # upload lease A held with it.
    wait_until(
        lambda: any(
            h["id"] == hub_a.hub_id and h["state"] == "stopped" and h["recovered_by_hub_id"]
            for h in cli_json("hubs", "list", "--all")
        ),
        20,
        "hub B to recover the killed hub",
    )
    assert hub_a.hub_id not in lease_holders(pg_url)
    assert send_ok(hub_b, credential, "half.bin", b"whole")
    assert (mirror_of(hub_b, node_id) / "half.bin").read_bytes() == b"whole"
    wait_until(
        lambda: (
            [f["hub_id"] for f in cli_json("mirrors", "ls", node_id)["files"]] == [hub_b.hub_id]
        ),
        15,
        "the record of hub B's file",
    )
