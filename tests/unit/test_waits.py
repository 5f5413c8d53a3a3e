"""Waits on the journal decided in core: `journal.wait`, `journal.follow_logs` and
`nodes.wait_drained`, with a pluggable pause (the hook a wake-up on a change plugs into)."""

from __future__ import annotations

import math

from cortexctl.core import journal, nodes
from cortexctl.core.clock import Deadline
from cortexctl.store.engine import Store
from cortexctl.store.models import Task
from tests.unit.test_verbs_core import add, submit


def test_wait_returns_the_ended_views_once_every_task_ended(fresh_store: Store) -> None:
    node = add(fresh_store, "n1")
    first, second = submit(fresh_store, node.id), submit(fresh_store, node.id)
    asked: list[float] = []

    def pause(at_most_s: float) -> None:  # "something changed": one task ends per pause
        asked.append(at_most_s)
        with fresh_store.session(write=True) as session:
            journal.cancel_task(session, [first.id, second.id][len(asked) - 1])

    result = journal.wait(fresh_store.session, [second.id, first.id], pause=pause)
    assert not result.timed_out and result.waiting == []
    assert [view.id for view in result.ended] == [second.id, first.id]  # the order asked
    assert {view.state for view in result.ended} == {journal.CANCELLED}
    assert asked == [math.inf, math.inf]  # no deadline: the pause decides how long


def test_wait_times_out_leaving_the_tasks_as_they_are(fresh_store: Store) -> None:
    node = add(fresh_store, "n1")
    done, left = submit(fresh_store, node.id), submit(fresh_store, node.id)
    with fresh_store.session(write=True) as session:
        journal.cancel_task(session, done.id)
    asked: list[float] = []
    result = journal.wait(
        fresh_store.session, [done.id, left.id], deadline=Deadline.after(0), pause=asked.append
    )
    assert result.timed_out and result.waiting == [left.id]
    assert [view.id for view in result.ended] == [done.id]
    assert asked == []  # a passed deadline is not slept past
    with fresh_store.session() as session:
        assert journal.get_task(session, left.id).state == journal.PENDING


def test_wait_asks_the_pause_for_no_more_than_the_time_left(fresh_store: Store) -> None:
    node = add(fresh_store, "n1")
    task = submit(fresh_store, node.id)
    asked: list[float] = []

    def pause(at_most_s: float) -> None:
        asked.append(at_most_s)
        with fresh_store.session(write=True) as session:
            journal.cancel_task(session, task.id)

    journal.wait(fresh_store.session, [task.id], deadline=Deadline.after(3600), pause=pause)
    assert len(asked) == 1 and 0 < asked[0] <= 3600


def test_follow_logs_yields_until_the_task_ended(fresh_store: Store) -> None:
    node = add(fresh_store, "n1")
    task = submit(fresh_store, node.id)
    outputs = [b"one\n", b"one\ntwo\n"]

    def pause(_at_most_s: float) -> None:
        with fresh_store.session(write=True) as session:
            row = session.get(Task, task.id)
            assert row is not None
            row.stdout = outputs.pop(0)
            if not outputs:
                journal.cancel_task(session, task.id)

    seen = list(journal.follow_logs(fresh_store.session, task.id[:8], pause=pause))
    assert [logs.stdout for logs in seen] == ["", "one\n", "one\ntwo\n"]
    assert [logs.ended for logs in seen] == [False, False, True]


def test_wait_drained_names_what_still_runs_at_the_deadline(fresh_store: Store) -> None:
    node = add(fresh_store, "n1")
    task = submit(fresh_store, node.id)
    with fresh_store.session(write=True) as session:
        row = session.get(Task, task.id)
        assert row is not None
        row.state = journal.RUNNING
    left = nodes.wait_drained(fresh_store.session, node.id, deadline=Deadline.after(0))
    assert left == [task.id]

    def pause(_at_most_s: float) -> None:
        with fresh_store.session(write=True) as session:
            journal.cancel_task(session, task.id)

    assert nodes.wait_drained(fresh_store.session, node.id, pause=pause) == []
