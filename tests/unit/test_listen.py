"""store.listen: a commit that bumps the change counter wakes a listener (PostgreSQL
NOTIFY in the same transaction, SQLite data_version), and nothing else wakes a hub's."""

from __future__ import annotations

from typing import Any

from cortexctl.core import changes
from cortexctl.store.listen import CHANGES_CHANNEL, TASKS_CHANNEL, ChangeListener
from cortexctl.store.models import Counter


def test_a_committed_bump_wakes_a_listener_and_a_rolled_back_one_does_not(
    fresh_store: Any,
) -> None:
    listener = ChangeListener(fresh_store.url, (CHANGES_CHANNEL,), counter=True)
    try:
        assert listener.wait(0.0) is False  # connected (LISTEN / baseline), nothing yet
        with fresh_store.session(write=True) as session:
            changes.bump(session)
        assert listener.wait(10.0) is True
        assert listener.wait(0.05) is False  # one change, one wake
        try:
            with fresh_store.session(write=True) as session:
                changes.bump(session)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        assert listener.wait(0.2) is False
    finally:
        listener.close()


def test_a_write_that_is_not_a_change_does_not_wake_a_hub(fresh_store: Any) -> None:
    hub = ChangeListener(fresh_store.url, (CHANGES_CHANNEL,), counter=True)
    waiter = ChangeListener(fresh_store.url, (CHANGES_CHANNEL, TASKS_CHANNEL))
    try:
        hub.wait(0.0)
        waiter.wait(0.0)
        with fresh_store.session(write=True) as session:
            session.add(Counter(name="bench-other", value=1))  # a real write
            changes.task_ended(session)  # what recording a task's result sends
        assert hub.wait(0.2) is False
        assert waiter.wait(10.0) is True  # `tasks wait` looks
    finally:
        hub.close()
        waiter.close()
