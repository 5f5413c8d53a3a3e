"""Hubs as members: leases judged on the store's clock, epochs, who took over; the schema
lock; the agent's ring of hubs; `serve --processes` helpers."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from cortexctl.agent.failover import Endpoint, HubRing, parse_hubs
from cortexctl.agent.transport import Transport
from cortexctl.core import clock, hubs, recovery
from cortexctl.errors import Fenced, InvalidArgument
from cortexctl.hub.processes import metrics_listen, suffixed
from cortexctl.store.engine import SCHEMA_HEAD, Store, current_revision, upgrade
from cortexctl.store.models import Hub


def lapse(store: Store, hub_id: str) -> None:
    """Move a hub's lease into the past, on the store's own clock."""
    with store.session(write=True) as session:
        past = hubs.store_now(session) - timedelta(seconds=1)
        session.execute(update(Hub).where(Hub.id == hub_id).values(lease_expires_at=past))


def test_epoch_grows_at_each_start_and_when_a_lapsed_lease_is_reacquired(
    fresh_store: Store,
) -> None:
    with fresh_store.session(write=True) as session:
        assert hubs.register_hub(session, "hub_a", "127.0.0.1:1", 5.0) == 1
    with fresh_store.session(write=True) as session:
        renewal = hubs.renew_hub(session, "hub_a", 5.0, epoch=1, nodes_connected=3)
    assert (renewal.epoch, renewal.lapsed, renewal.taken_over) == (1, False, False)
    lapse(fresh_store, "hub_a")
    with fresh_store.session(write=True) as session:
        assert hubs.dead_hub_ids(session) == {"hub_a"}
        renewal = hubs.renew_hub(session, "hub_a", 5.0, epoch=1)
    # Could not renew in time, but nobody took its place: a new epoch, not taken over.
    assert (renewal.epoch, renewal.lapsed, renewal.taken_over) == (2, True, False)
    with fresh_store.session() as session:
        assert not hubs.taken_over(session, "hub_a", 2)
        assert hubs.live_hub_ids(session) == {"hub_a"}
        (view,) = hubs.list_hubs(session)
    assert (view.state, view.epoch, view.nodes_connected) == ("live", 2, 3)
    assert 0 < view.lease_remaining_s <= 5.0
    with fresh_store.session(write=True) as session:
        assert hubs.register_hub(session, "hub_a", "127.0.0.1:1", 5.0) == 3  # a restart


def test_a_hub_recovered_by_another_is_taken_over(fresh_store: Store) -> None:
    with fresh_store.session(write=True) as session:
        hubs.register_hub(session, "hub_a", "a:1", 5.0)
        hubs.register_hub(session, "hub_b", "b:1", 5.0)
    lapse(fresh_store, "hub_a")
    with fresh_store.session(write=True) as session:
        assert recovery.sweep_dead_hubs(session, me="hub_b") == {"hub_a": 0}
    with fresh_store.session(write=True) as session:
        assert hubs.taken_over(session, "hub_a", 1)
        assert not hubs.taken_over(session, "hub_b", 1)
        assert recovery.sweep_dead_hubs(session, me="hub_b") == {}  # once, by one survivor
        (view,) = [v for v in hubs.list_hubs(session, include_stopped=True) if v.id == "hub_a"]
        assert (view.state, view.recovered_by_hub_id) == ("stopped", "hub_b")
        renewal = hubs.renew_hub(session, "hub_a", 5.0, epoch=1)
    # Taken over: the renewal changes nothing; the hub fences itself, then joins again.
    assert (renewal.taken_over, renewal.recovered_by, renewal.epoch) == (True, "hub_b", 1)
    with fresh_store.session(write=True) as session:
        with pytest.raises(Fenced, match="taken over by hub hub_b"):
            hubs.hold(session, hubs.Member("hub_a", 1))
        assert hubs.live_hub_ids(session) == {"hub_b"}
        assert hubs.register_hub(session, "hub_a", "a:1", 5.0) == 2
    with fresh_store.session() as session:
        assert not hubs.taken_over(session, "hub_a", 2)
        assert hubs.hold(session, hubs.Member("hub_a", 2)) == 2
        assert hubs.live_hub_ids(session) == {"hub_a", "hub_b"}


def test_a_renewal_under_an_epoch_another_process_replaced_changes_nothing(
    fresh_store: Store,
) -> None:
    with fresh_store.session(write=True) as session:
        hubs.register_hub(session, "hub_a", "a:1", 5.0)
        hubs.register_hub(session, "hub_a", "a:1", 5.0)  # another process, same id: epoch 2
        renewal = hubs.renew_hub(session, "hub_a", 5.0, epoch=1)
        assert hubs.taken_over(session, "hub_a", 1)
    assert (renewal.taken_over, renewal.epoch, renewal.lapsed) == (True, 2, False)


def test_leases_are_judged_on_the_database_clock(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(pg_url)
    try:
        upgrade(store)
        skew = timedelta(days=1)
        real_now = clock.now
        monkeypatch.setattr(clock, "now", lambda: real_now() + skew)  # the hub's clock is off
        with store.session(write=True) as session:
            hubs.register_hub(session, "hub_a", "a:1", 30.0)
            db_now = hubs.store_now(session)
        assert abs(db_now - real_now()) < timedelta(minutes=5)
        with store.session() as session:
            assert hubs.live_hub_ids(session) == {"hub_a"}
            assert hubs.dead_hub_ids(session) == set()
            (view,) = hubs.list_hubs(session)
        assert view.lease_expires_at < real_now() + timedelta(minutes=5)
        assert 0 < view.lease_remaining_s <= 30.0
    finally:
        store.dispose()


def test_concurrent_upgrades_of_an_empty_postgresql_schema_all_succeed(pg_url: str) -> None:
    results: list[Any] = []

    def run() -> None:
        store = Store(pg_url)
        try:
            results.append(upgrade(store))
        except BaseException as err:  # noqa: BLE001 - asserted below
            results.append(err)
        finally:
            store.dispose()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(isinstance(result, tuple) for result in results), results
    assert sum(before is None for before, _after in results) == 1  # migrated once
    assert {after for _before, after in results} == {SCHEMA_HEAD}
    store = Store(pg_url)
    assert current_revision(store) == SCHEMA_HEAD
    store.dispose()


# --- the agent's hubs ------------------------------------------------------------------


def test_parse_hubs() -> None:
    assert parse_hubs("a:1, b:2,a:1,") == ["a:1", "b:2"]
    with pytest.raises(InvalidArgument):
        parse_hubs(" , ")
    with pytest.raises(InvalidArgument):
        parse_hubs("a:1,nonsense")


def test_the_ring_starts_at_a_random_hub_and_visits_every_one() -> None:
    hubs_given = "10.0.0.1:50051,10.0.0.2:50051,10.0.0.3:50051"
    starts = {
        HubRing.parse(hubs_given, rng=random.Random(seed)).current.address for seed in range(30)
    }
    assert len(starts) == 3  # a fleet spreads over the hubs
    ring = HubRing.parse(hubs_given, rng=random.Random(1))
    seen = [ring.current.address] + [ring.advance().address for _ in range(3)]
    assert set(seen) == set(hubs_given.split(","))
    assert seen[0] == seen[3]
    assert ring.several
    assert not HubRing.parse("127.0.0.1:1").several


def test_a_name_with_several_addresses_counts_as_several_hubs() -> None:
    def resolver(hub: str) -> list[str]:
        return ["10.0.0.1:50051", "10.0.0.2:50051"] if hub.startswith("hubs.") else [hub]

    ring = HubRing.parse("hubs.example:50051", resolver=resolver, rng=random.Random(0))
    assert ring.several
    seen = {ring.current, ring.advance()}
    assert seen == {
        Endpoint("10.0.0.1:50051", "hubs.example"),
        Endpoint("10.0.0.2:50051", "hubs.example"),
    }
    assert str(Endpoint("10.0.0.1:50051", "hubs.example")) == "hubs.example:50051 (10.0.0.1:50051)"


def test_transport_checks_every_hub_given() -> None:
    Transport().check("127.0.0.1:1,[::1]:2")
    with pytest.raises(InvalidArgument, match="10.0.0.9:1"):
        Transport().check("127.0.0.1:1,10.0.0.9:1")


def test_each_process_gets_its_own_files_and_metrics_port(tmp_path: Any) -> None:
    status = tmp_path / "status.json"
    assert suffixed(status, 0) == status
    assert suffixed(status, 2) == tmp_path / "status.json.2"
    assert suffixed(None, 1) is None
    assert metrics_listen("127.0.0.1:9100", 0) == "127.0.0.1:9100"
    assert metrics_listen("127.0.0.1:9100", 3) == "127.0.0.1:9103"
    assert metrics_listen("", 3) == ""
