"""The one event stream (`core.status.events_since`): typed events, a cursor between asks."""

from __future__ import annotations

from cortexctl.core import journal, status
from cortexctl.core.views import to_jsonable
from cortexctl.store.engine import Store
from tests.unit.test_verbs_core import PERMISSIVE, add, connect, submit


def test_events_since_a_cursor_are_typed_and_each_told_once(fresh_store: Store) -> None:
    first_node = add(fresh_store, "n1")
    with fresh_store.session() as session:
        watching, cursor = status.start_events(session, PERMISSIVE)
    assert (watching.event, watching.nodes) == ("watching", 1)
    assert list(to_jsonable(watching)) == ["event", "ts", "nodes", "hubs"]

    second = add(fresh_store, "n2")
    connect(fresh_store, first_node.id)
    task = submit(fresh_store, first_node.id)
    with fresh_store.session(write=True) as session:
        journal.cancel_task(session, task.id)
    with fresh_store.session() as session:
        events, cursor = status.events_since(session, cursor, PERMISSIVE)
    by_kind = {event.event: event for event in events}
    assert set(by_kind) == {"node_added", "node_joined", "task_finished", "audit"}
    audited = [event for event in events if isinstance(event, status.AuditRecorded)]
    assert audited and audited == sorted(audited, key=lambda event: event.seq)
    assert events[-len(audited) :] == audited  # audit entries come last, in log order
    added, joined, finished = (
        by_kind["node_added"],
        by_kind["node_joined"],
        by_kind["task_finished"],
    )
    assert isinstance(added, status.NodeAdded) and added.node_id == second.id
    assert isinstance(joined, status.NodeStatusChanged) and joined.previous == "offline"
    assert isinstance(finished, status.TaskFinished) and finished.state == journal.CANCELLED
    assert list(to_jsonable(finished)) == ["event", "task_id", "node_id", "state", "ts"]

    with fresh_store.session() as session:
        again, _ = status.events_since(session, cursor, PERMISSIVE)
    assert again == []  # nothing changed since the last ask
