"""Mirror quotas in the store: one conditional UPDATE per committed file, so hubs sharing
a store (each its own engine here) can never together go past a node's quota."""

from __future__ import annotations

import threading

import pytest

from cortexctl.core import quotas
from cortexctl.core.quotas import QuotaDefaults
from cortexctl.errors import InvalidArgument, ResourceExhausted
from cortexctl.store.engine import Store, upgrade
from tests.unit.test_core import join, new_invite

NONE = QuotaDefaults()


def usage(store: Store, node_id: str, defaults: QuotaDefaults = NONE) -> quotas.Usage:
    with store.session() as session:
        found = quotas.read_usage(session, node_id, defaults)
    assert found is not None
    return found


def test_charge_counts_within_the_quota_and_refuses_past_it(fresh_store: Store) -> None:
    node = join(fresh_store, new_invite(fresh_store)).node
    with fresh_store.session(write=True) as session:
        quotas.set_quota(session, "n1", quota_bytes=1000, quota_files=2, clear=False, defaults=NONE)
    with fresh_store.session(write=True) as session:
        quotas.charge(session, node.id, 600, 1, NONE)
    with (
        pytest.raises(ResourceExhausted, match="mirror quota of 1000 bytes"),
        fresh_store.session(write=True) as session,
    ):
        quotas.charge(session, node.id, 500, 1, NONE)
    with fresh_store.session(write=True) as session:
        quotas.charge(session, node.id, -100, 0, NONE)  # a replacement that shrinks
        quotas.charge(session, node.id, 400, 1, NONE)
    with (
        pytest.raises(ResourceExhausted, match="quota of 2 files"),
        fresh_store.session(write=True) as session,
    ):
        quotas.charge(session, node.id, 0, 1, NONE)
    assert (usage(fresh_store, node.id).used_bytes, usage(fresh_store, node.id).used_files) == (
        900,
        2,
    )
    with fresh_store.session(write=True) as session:
        quotas.release(session, node.id, 5000, 5)  # never below zero
    assert usage(fresh_store, node.id).used_bytes == 0


def test_hub_default_applies_until_a_node_has_its_own(fresh_store: Store) -> None:
    node = join(fresh_store, new_invite(fresh_store)).node
    defaults = QuotaDefaults(bytes=100, files=0)
    with (
        pytest.raises(ResourceExhausted, match="quota of 100 bytes"),
        fresh_store.session(write=True) as session,
    ):
        quotas.charge(session, node.id, 101, 1, defaults)
    with fresh_store.session(write=True) as session:
        own = quotas.set_quota(
            session, node.id, quota_bytes=0, quota_files=None, clear=False, defaults=defaults
        )
    assert (own.quota_bytes, own.quota_configured) == (0, True)  # 0: no limit of its own
    with fresh_store.session(write=True) as session:
        quotas.charge(session, node.id, 10_000, 1, defaults)
    with fresh_store.session(write=True) as session:
        back = quotas.set_quota(
            session, node.id, quota_bytes=None, quota_files=None, clear=True, defaults=defaults
        )
    assert (back.quota_bytes, back.quota_configured) == (100, False)
    with pytest.raises(InvalidArgument), fresh_store.session(write=True) as session:
        quotas.set_quota(
            session, node.id, quota_bytes=1, quota_files=None, clear=True, defaults=defaults
        )


def racing_hubs_never_exceed_the_quota(url: str) -> None:
    setup = Store(url)
    try:
        upgrade(setup)
        node = join(setup, new_invite(setup)).node
        with setup.session(write=True) as session:
            quotas.set_quota(
                session, node.id, quota_bytes=1000, quota_files=0, clear=False, defaults=NONE
            )
    finally:
        setup.dispose()
    hubs = [Store(url, pool_size=2) for _ in range(4)]  # one engine per "hub"
    outcomes: list[str] = []
    barrier = threading.Barrier(16)

    def upload(store: Store) -> None:
        barrier.wait()
        try:
            with store.session(write=True) as session:
                quotas.charge(session, node.id, 100, 1, NONE)
            outcomes.append("stored")
        except ResourceExhausted:
            outcomes.append("refused")

    threads = [threading.Thread(target=upload, args=(hubs[i % 4],)) for i in range(16)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["refused"] * 6 + ["stored"] * 10
        assert usage(hubs[0], node.id).used_bytes == 1000
    finally:
        for store in hubs:
            store.dispose()


def test_racing_hubs_never_exceed_the_quota_on_sqlite(database_url: str) -> None:
    racing_hubs_never_exceed_the_quota(database_url)


def test_racing_hubs_never_exceed_the_quota_on_postgresql(pg_url: str) -> None:
    racing_hubs_never_exceed_the_quota(pg_url)
