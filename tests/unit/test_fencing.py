"""Fencing in core: a claim records the hub and its epoch, every later move of the task by
a hub holds that membership, and a hub another one took over moves nothing."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from cortexctl.core import clock, hubs, journal, locks, nodes, presence, recovery
from cortexctl.errors import Fenced
from cortexctl.store.engine import Store
from cortexctl.store.models import Hub, Presence, SyncLease
from tests.unit.test_core import DEFAULTS, join, new_invite


def lapse(store: Store, hub_id: str) -> None:
    with store.session(write=True) as session:
        past = hubs.store_now(session) - timedelta(seconds=1)
        session.execute(update(Hub).where(Hub.id == hub_id).values(lease_expires_at=past))


def register(store: Store, hub_id: str) -> hubs.Member:
    with store.session(write=True) as session:
        return hubs.Member(hub_id, hubs.register_hub(session, hub_id, f"{hub_id}:1", 60.0))


def claim(store: Store, member: hubs.Member, stream_id: str, count: int = 1) -> list[str]:
    with store.session(write=True) as session:
        node = nodes.resolve_node(session, "n1")
        for _ in range(count):
            journal.submit_task(session, node, script="true", defaults=DEFAULTS)
        epoch = hubs.hold(session, member)
        claimed = journal.claim_pending(
            session, node, hub_id=member.hub_id, epoch=epoch, stream_id=stream_id, defaults=DEFAULTS
        )
        return [task.id for task in claimed]


@pytest.fixture
def node_id(fresh_store: Store) -> str:
    return join(fresh_store, new_invite(fresh_store, sandbox="permissive")).node.id


def test_a_claim_records_the_hub_and_its_epoch(fresh_store: Store, node_id: str) -> None:
    a = register(fresh_store, "hub_a")
    (task_id,) = claim(fresh_store, a, "s1")
    with fresh_store.session() as session:
        task = journal.get_task(session, task_id)
    assert (task.state, task.hub_id, task.hub_epoch) == ("dispatched", "hub_a", a.epoch)


def test_a_hub_taken_over_moves_none_of_its_tasks_and_the_survivor_fails_them_once(
    fresh_store: Store, node_id: str
) -> None:
    a, b = register(fresh_store, "hub_a"), register(fresh_store, "hub_b")
    running, dispatched = claim(fresh_store, a, "s1", count=2)
    with fresh_store.session(write=True) as session:
        assert journal.apply_update(session, node_id, running, journal.RUNNING, member=a).changed
        locks.begin_lease(
            session, node_id=node_id, path="f.bin", sync_id="x", hub_id="hub_a", temp_path="t"
        )
        now = clock.now()
        presence.flush_presence(session, [presence.PresenceUpdate(node_id, "hub_a", now, now)])
    lapse(fresh_store, "hub_a")
    with fresh_store.session(write=True) as session:
        assert recovery.sweep_dead_hubs(session, me="hub_b") == {"hub_a": 2}
    with fresh_store.session(write=True) as session:
        assert recovery.sweep_dead_hubs(session, me="hub_b") == {}  # once
        for task_id in (running, dispatched):
            task = journal.get_task(session, task_id)
            assert task.state == "failed" and "hub hub_a" in task.error
        # Its upload leases and presence went in the same transaction.
        assert session.scalars(select(SyncLease)).all() == []
        row = session.get(Presence, node_id)
        assert row is not None and row.disconnected_at is not None
    # The frozen hub wakes up: every move it tries is refused, whatever it carries.
    with (
        fresh_store.session(write=True) as session,
        pytest.raises(Fenced, match="taken over by hub hub_b"),
    ):
        journal.apply_update(session, node_id, running, journal.SUCCEEDED, member=a)
    for move in (
        lambda s: journal.fail_stream_tasks(s, ["s1"], "grace", member=a),
        lambda s: journal.requeue_unsent(s, [dispatched], "s1", member=a),
        lambda s: journal.fail_own_tasks(s, a, "drain"),
        lambda s: journal.adopt_tasks(
            s, node_id, stream_id="s2", member=a, held={running}, reason_lost="x"
        ),
    ):
        with fresh_store.session(write=True) as session, pytest.raises(Fenced):
            move(session)
    with fresh_store.session() as session:
        renewal = hubs.renew_hub(session, "hub_a", 60.0, epoch=a.epoch)
        assert renewal.taken_over and renewal.recovered_by == "hub_b"
    # A result the node sends on to a live hub is answered: the task ended FAILED.
    with fresh_store.session(write=True) as session:
        late = journal.apply_update(
            session, node_id, running, journal.CANCELLED, member=b, stream_id="s9"
        )
    assert (late.accepted, late.state) == (False, "failed")
    # Rejoined with a new epoch, it claims again; the old tasks stay failed.
    again = register(fresh_store, "hub_a")
    assert again.epoch > a.epoch
    (fresh,) = claim(fresh_store, again, "s3")
    with fresh_store.session(write=True) as session:
        assert journal.apply_update(session, node_id, fresh, journal.RUNNING, member=again).changed
        assert journal.get_task(session, running).state == "failed"


def test_a_lapsed_lease_nobody_took_keeps_its_tasks_under_the_new_epoch(
    fresh_store: Store, node_id: str
) -> None:
    a = register(fresh_store, "hub_a")
    (task_id,) = claim(fresh_store, a, "s1")
    lapse(fresh_store, "hub_a")
    with fresh_store.session(write=True) as session:
        renewal = hubs.renew_hub(session, "hub_a", 60.0, epoch=a.epoch)
    assert (renewal.lapsed, renewal.taken_over, renewal.epoch) == (True, False, a.epoch + 1)
    with fresh_store.session(write=True) as session:
        assert journal.get_task(session, task_id).hub_epoch == renewal.epoch
        # A move started under the epoch it knew before the renewal still lands.
        assert journal.apply_update(session, node_id, task_id, journal.SUCCEEDED, member=a).changed


def test_another_process_under_the_same_id_fences_the_older_one(
    fresh_store: Store, node_id: str
) -> None:
    old = register(fresh_store, "hub_a")
    (task_id,) = claim(fresh_store, old, "s1")
    new = register(fresh_store, "hub_a")  # a restart while the old process was frozen
    with fresh_store.session(write=True) as session, pytest.raises(Fenced, match="replaced") as err:
        journal.apply_update(session, node_id, task_id, journal.RUNNING, member=old)
    assert err.value.epoch == old.epoch  # the epoch the refused call held
    with fresh_store.session(write=True) as session:
        # The new process waits the grace for the node, then fails what its previous one left.
        assert (
            journal.fail_stream_tasks(session, ["s1"], "restarted", member=new, previous_run=True)
            == 1
        )


def test_a_report_through_another_hub_moves_the_task_there_first(
    fresh_store: Store, node_id: str
) -> None:
    a, b = register(fresh_store, "hub_a"), register(fresh_store, "hub_b")
    (task_id,) = claim(fresh_store, a, "s1")
    with fresh_store.session(write=True) as session:
        outcome = journal.apply_update(
            session, node_id, task_id, journal.RUNNING, member=b, stream_id="s2"
        )
        assert (outcome.changed, outcome.moved) == (True, True)
        task = journal.get_task(session, task_id)
        assert (task.hub_id, task.hub_epoch, task.state) == ("hub_b", b.epoch, "running")
    with fresh_store.session(write=True) as session:
        # The hub it came from can no longer move it.
        assert not journal.apply_update(session, node_id, task_id, journal.FAILED, member=a).changed
        assert journal.fail_stream_tasks(session, ["s1"], "grace", member=a) == 0


def test_an_operator_cancel_lands_whoever_holds_the_task(fresh_store: Store, node_id: str) -> None:
    a = register(fresh_store, "hub_a")
    (task_id,) = claim(fresh_store, a, "s1")
    with fresh_store.session(write=True) as session:
        assert journal.cancel_task(session, task_id).state == "cancelled"


def test_the_sweep_skips_a_hub_in_the_middle_of_a_move(pg_url: str) -> None:
    """PostgreSQL: a move holds the hub's row FOR SHARE, so a survivor's recovery (FOR UPDATE
    SKIP LOCKED) passes it by until the move commits, and a later move sees the takeover."""
    from cortexctl.store.engine import upgrade

    store = Store(pg_url)
    try:
        upgrade(store)
        register(store, "hub_b")
        a = register(store, "hub_a")
        lapse(store, "hub_a")
        holding, release = threading.Event(), threading.Event()

        def move() -> None:
            with store.session(write=True) as session:
                hubs.hold(session, a)
                holding.set()
                release.wait(30)

        mover = threading.Thread(target=move)
        mover.start()
        assert holding.wait(30)
        with store.session(write=True) as session:
            assert recovery.sweep_dead_hubs(session, me="hub_b") == {}  # skipped, not blocked
        release.set()
        mover.join(30)
        with store.session(write=True) as session:
            assert recovery.sweep_dead_hubs(session, me="hub_b") == {"hub_a": 0}
        with store.session(write=True) as session, pytest.raises(Fenced):
            hubs.hold(session, a)
    finally:
        store.dispose()


def test_a_call_of_the_epoch_before_the_last_fence_starts_no_new_fence() -> None:
    """A store call under way while the hub fenced and rejoined fails with its old epoch:
    that takeover is answered, so the rejoined hub keeps serving (it once fenced twice)."""
    from types import SimpleNamespace

    from cortexctl.hub.fencing import Fence

    spawned: list[str] = []

    def spawn(coro: object, name: str) -> None:
        coro.close()  # type: ignore[attr-defined]
        spawned.append(name)

    rt = SimpleNamespace(draining=False, fenced=False, epoch=5, hub_id="hub_a", spawn=spawn)
    fence = Fence(rt, set_serving=lambda serving: None, address=lambda: "a:1")  # type: ignore[arg-type]
    fence.trigger(Fenced("replaced by another process registered under its id", epoch=4))
    assert (spawned, rt.fenced) == ([], False)
    fence.trigger(Fenced("taken over by hub_b", epoch=5))
    assert (spawned, rt.fenced) == (["fence"], True)
