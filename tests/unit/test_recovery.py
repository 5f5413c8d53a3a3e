"""A hub's start-up recovery decided in core (`core.recovery.start_hub`)."""

from __future__ import annotations

from pathlib import Path

from cortexctl.core import hubs, recovery
from cortexctl.store.engine import Store
from tests.unit.test_hub_membership import lapse


def test_start_hub_recovers_the_dead_and_joins_with_a_new_epoch(
    fresh_store: Store, tmp_path: Path
) -> None:
    with fresh_store.session(write=True) as session:
        hubs.register_hub(session, "hub_a", "a:1", 5.0)
    lapse(fresh_store, "hub_a")
    start = recovery.start_hub(
        fresh_store, "hub_b", address="b:1", lease_s=5.0, mirrors_dir=tmp_path
    )
    assert not start.schema_upgraded  # the fixture's store is at the head already
    assert (start.recovered, start.stale_uploads, start.epoch) == ({"hub_a": 0}, [], 1)
    again = recovery.start_hub(
        fresh_store, "hub_b", address="b:1", lease_s=5.0, mirrors_dir=tmp_path
    )
    assert (again.recovered, again.epoch) == ({}, 2)  # a restart: recovered once, epoch grows
    with fresh_store.session() as session:
        assert hubs.live_hub_ids(session) == {"hub_b"}
