"""Stream opens in one transaction (core), and the group commit that batches them (hub)."""

from __future__ import annotations

import asyncio

from cortexctl.core import journal, nodes, presence
from cortexctl.core.stream_open import OpenedStream, OpenRequest, open_streams
from cortexctl.errors import CortexError, NotFound, Unauthenticated
from cortexctl.hub.batching import Batcher
from cortexctl.hub.executor import StoreExecutor
from cortexctl.store.engine import Store
from tests.unit.test_core import DEFAULTS, join, new_invite
from tests.unit.test_fencing import claim, register


def open_all(store: Store, *requests: OpenRequest) -> list[OpenedStream | CortexError]:
    with store.session(write=True) as session:
        return open_streams(
            session, requests, hub_id="hub_a", heartbeat_interval_s=1.0, defaults=DEFAULTS
        )


def test_opens_of_one_batch_claim_in_order_and_a_vanished_node_fails_alone(
    fresh_store: Store,
) -> None:
    n1 = join(fresh_store, new_invite(fresh_store, sandbox="permissive"), "n1").node.id
    n2 = join(fresh_store, new_invite(fresh_store), "n2").node.id
    first, gone, second, other = open_all(
        fresh_store,
        OpenRequest(n1, "s1", "ipv4:127.0.0.1:1"),
        OpenRequest("nd_gone", "s9", "ipv4:127.0.0.1:9"),
        OpenRequest(n1, "s2", "ipv4:127.0.0.1:2"),  # the same node again: the newer wins
        OpenRequest(n2, "s3", "ipv4:127.0.0.1:3"),
    )
    assert isinstance(gone, NotFound) and "nd_gone" in str(gone)
    assert isinstance(first, OpenedStream) and isinstance(second, OpenedStream)
    assert isinstance(other, OpenedStream)
    assert (first.claim.gen, second.claim.gen, other.claim.gen) == (1, 2, 1)
    assert (first.policy.mode, other.policy.mode) == ("permissive", "strict")
    assert (first.node_name, other.node_name) == ("n1", "n2")
    with fresh_store.session() as session:
        assert presence.stream_owners(session, [n1, n2]) == {n1: ("hub_a", 2), n2: ("hub_a", 1)}


def test_an_open_says_whether_the_journal_holds_work_of_the_node_in_flight(
    fresh_store: Store,
) -> None:
    busy = join(fresh_store, new_invite(fresh_store, sandbox="permissive"), "n1").node.id
    idle = join(fresh_store, new_invite(fresh_store, sandbox="permissive"), "n2").node.id
    with fresh_store.session(write=True) as session:
        node = nodes.resolve_node(session, idle)
        journal.submit_task(session, node, script="true", defaults=DEFAULTS)  # pending only
        busy_node = nodes.resolve_node(session, busy)
    assert busy_node.name == "n1"  # claim() dispatches to the node named n1
    claim(fresh_store, register(fresh_store, "hub_a"), "s0")
    opened = open_all(fresh_store, OpenRequest(busy, "s1", "p"), OpenRequest(idle, "s2", "p"))
    assert [o.work_in_flight for o in opened if isinstance(o, OpenedStream)] == [True, False]


def test_callers_arriving_together_share_a_transaction_and_each_gets_its_own_result(
    fresh_store: Store,
) -> None:
    ids = [join(fresh_store, new_invite(fresh_store), f"n{i}").node.id for i in range(5)]

    async def storm() -> tuple[list[object], Batcher[OpenRequest, OpenedStream]]:
        executor = StoreExecutor(fresh_store, workers=2, max_queue=16)
        batcher: Batcher[OpenRequest, OpenedStream] = Batcher(
            executor,
            open_streams,
            what="stream opens",
            timeout_s=10.0,
            hub_id="hub_a",
            heartbeat_interval_s=1.0,
            defaults=DEFAULTS,
        )
        requests = [OpenRequest(i, f"s{n}", "p") for n, i in enumerate([*ids, "nd_gone"])]
        try:
            results = await asyncio.gather(
                *(batcher.submit(r) for r in requests), return_exceptions=True
            )
        finally:
            executor.shutdown()
        return results, batcher

    results, batcher = asyncio.run(storm())
    assert [type(r).__name__ for r in results] == ["OpenedStream"] * 5 + ["NotFound"]
    # All six queue in one turn of the loop, before the batch runs: one transaction.
    assert (batcher.batches, batcher.items) == (1, 6)


def test_an_open_verifies_a_credential_it_is_given(fresh_store: Store) -> None:
    joined = join(fresh_store, new_invite(fresh_store), "n1")
    node_id, credential = joined.node.id, joined.credential
    good, forged = open_all(
        fresh_store,
        OpenRequest(node_id, "s1", "p", credential=credential),
        OpenRequest(node_id, "s2", "p", credential=credential[:-4] + "AAAA"),
    )
    assert isinstance(good, OpenedStream) and good.node_name == "n1"
    assert isinstance(forged, Unauthenticated)
    with fresh_store.session() as session:  # the forged open claimed nothing
        assert presence.stream_owners(session, [node_id]) == {node_id: ("hub_a", 1)}
