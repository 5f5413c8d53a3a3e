"""`tasks submit` is one core call: `core.submission.submit` returns what the CLI prints."""

from __future__ import annotations

import pytest

from cortexctl.core import journal, nodes, submission
from cortexctl.core.sandbox import SandboxDefaults
from cortexctl.core.selectors import parse_selector
from cortexctl.errors import Conflict, InvalidArgument, NotFound
from cortexctl.store.engine import Store
from tests.unit.test_verbs_core import PERMISSIVE, add, connect


def test_one_named_node_gets_one_task_and_is_said_to_be_offline(fresh_store: Store) -> None:
    node = add(fresh_store, "n1")
    with fresh_store.session(write=True) as session:
        done = submission.submit(
            session, node="n1", argv=["true"], timeout_s=1.2, defaults=PERMISSIVE
        )
        row = journal.get_task(session, done.tasks[0].id)
    assert not done.fan_out and done.rejected is None and done.skipped == []
    assert [(t.node_id, t.state) for t in done.created] == [(node.id, journal.PENDING)]
    assert done.not_connected == ("n1",)
    assert row.timeout_s == 2  # rounded up to whole seconds


def test_a_fan_out_skips_nodes_that_take_no_tasks(fresh_store: Store) -> None:
    eu1, eu2 = add(fresh_store, "eu-1", zone="eu"), add(fresh_store, "eu-2", zone="eu")
    add(fresh_store, "us-1", zone="us")
    connect(fresh_store, eu1.id)
    with fresh_store.session(write=True) as session:
        nodes.set_cordon(session, eu2.id, True)
    with fresh_store.session(write=True) as session:
        done = submission.submit(
            session, selector=parse_selector("zone=eu"), argv=["true"], defaults=PERMISSIVE
        )
    assert done.fan_out
    assert [t.node_name for t in done.created] == ["eu-1"]
    assert done.skipped == ["eu-2"] and "cordoned" in done.tasks[1].error
    assert done.not_connected == ()  # eu-1 is online


def test_a_named_node_that_refuses_raises(fresh_store: Store) -> None:
    node = add(fresh_store, "n1")
    with fresh_store.session(write=True) as session:
        nodes.set_cordon(session, node.id, True)
    with pytest.raises(Conflict, match="cordoned"), fresh_store.session(write=True) as session:
        submission.submit(session, node="n1", argv=["true"], defaults=PERMISSIVE)


def test_a_task_the_policy_forbids_is_rejected(fresh_store: Store) -> None:
    add(fresh_store, "n1")
    with fresh_store.session(write=True) as session:
        done = submission.submit(
            session, node="n1", script="true", defaults=SandboxDefaults(mode="strict")
        )
    assert done.rejected is not None and done.rejected.state == journal.REJECTED
    assert done.not_connected == ()  # a rejected task waits for nothing


def test_the_shape_is_checked_before_the_targets(fresh_store: Store) -> None:
    with pytest.raises(InvalidArgument, match="exactly one"), fresh_store.session() as session:
        submission.submit(session, node="nowhere", defaults=PERMISSIVE)
    with pytest.raises(NotFound), fresh_store.session() as session:
        submission.submit(session, node="nowhere", argv=["true"], defaults=PERMISSIVE)
    with pytest.raises(InvalidArgument, match="no active node"), fresh_store.session() as s:
        submission.submit(s, selector=parse_selector("zone=mars"), argv=["x"], defaults=PERMISSIVE)
    with pytest.raises(InvalidArgument, match="not both"), fresh_store.session() as session:
        submission.submit(session, argv=["true"], defaults=PERMISSIVE)
