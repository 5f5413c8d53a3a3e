"""The reconciler's pass planned in core (`core.dispatch.plan`), over one session."""

from __future__ import annotations

from dataclasses import dataclass, field

from cortexctl.core import dispatch, hubs, journal
from cortexctl.store.engine import Store
from cortexctl.store.models import Node, Task
from tests.unit.test_verbs_core import PERMISSIVE, add, submit


@dataclass
class Stream:
    stream_id: str
    policy_revision_sent: int = 0
    in_flight: set[str] = field(default_factory=set)
    gen: int = 0  # 0: a stream that claimed no presence row (no check)


def plan(
    store: Store, streams: dict[str, Stream], cached: dict[str, str], *, draining: bool = False
) -> dispatch.Plan[str]:
    with store.session(write=True) as session:
        if not hubs.live_hub_ids(session):
            hubs.register_hub(session, "hub-a", "a:1", 60.0)
    with store.session(write=True) as session:
        return dispatch.plan(
            session,
            streams,
            cached,
            member=hubs.Member("hub-a", 1),
            defaults=PERMISSIVE,
            draining=draining,
            assign=lambda task: task.task_id,
        )


def test_a_pass_claims_pending_work_pushes_policies_and_names_ended_tasks(
    fresh_store: Store,
) -> None:
    node = add(fresh_store, "n1")
    first, second = submit(fresh_store, node.id), submit(fresh_store, node.id)
    with fresh_store.session() as session:
        row = session.get(Node, node.id)
        assert row is not None
        credential, revision = row.credential_hash, row.policy_revision
    stream = Stream("s1", policy_revision_sent=revision - 1)
    assert plan(fresh_store, {node.id: stream}, {}, draining=True).assignments == {}
    result = plan(fresh_store, {node.id: stream}, {node.id: credential})
    assert sorted(result.assignments[node.id]) == sorted([first.id, second.id])
    assert set(result.policies) == {node.id} and not (result.revoked | result.rotated)
    with fresh_store.session() as session:
        states = {t.state for t in session.query(Task).where(Task.node_id == node.id)}
    assert states == {journal.DISPATCHED}

    with fresh_store.session(write=True) as session:
        journal.cancel_task(session, first.id)
    stream = Stream("s1", policy_revision_sent=revision, in_flight={first.id, second.id})
    result = plan(fresh_store, {node.id: stream}, {node.id: credential})
    assert result.ended == {first.id: journal.CANCELLED}
    assert result.assignments == {} and result.policies == {}


def test_revoked_and_rotated_nodes_are_named_and_get_nothing(fresh_store: Store) -> None:
    revoked, rotated = add(fresh_store, "gone"), add(fresh_store, "rotated")
    submit(fresh_store, revoked.id)
    with fresh_store.session(write=True) as session:
        node = session.get(Node, revoked.id)
        assert node is not None
        node.revoked_at = journal.clock.now()
    streams = {revoked.id: Stream("a"), rotated.id: Stream("b", policy_revision_sent=99)}
    result = plan(fresh_store, streams, {rotated.id: "an old hash"})
    assert (result.revoked, result.rotated) == ({revoked.id}, {rotated.id})
    assert result.assignments == {} and result.policies == {}
    assert plan(fresh_store, {}, {}) == dispatch.Plan()
