"""The change counter: every write a running hub must act on bumps it in the same
transaction. Hubs wake on it at once (``store.listen``: PostgreSQL NOTIFY sent here in the
same transaction, so it is delivered on commit; SQLite's data_version) and poll it (one
indexed row) as the safety net."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from cortexctl.store.listen import CHANGES_CHANNEL, STREAMS_CHANNEL, TASKS_CHANNEL, stream_note
from cortexctl.store.models import Counter

CHANGES = "changes"
_NOTIFY = text("SELECT pg_notify(:channel, current_schema())")
_NOTIFY_TASKS = text("SELECT pg_notify(:channel, current_schema() || :rest)")
# A note names at most this many tasks (a NOTIFY payload is < 8000 bytes); a bigger batch
# names none, which wakes every waiter.
NOTE_MAX_TASKS = 64
_NOTIFY_STREAM = text("SELECT pg_notify(:channel, current_schema() || ' ' || :rest)")
# The bump and its wake-up in one round trip (the counter's row stays locked to the commit).
_BUMP_AND_NOTIFY = text(
    "WITH bumped AS (UPDATE counters SET value = value + 1 WHERE name = :name RETURNING value) "
    "SELECT pg_notify(:channel, current_schema()) FROM bumped"
)


def bump(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_BUMP_AND_NOTIFY, {"name": CHANGES, "channel": CHANGES_CHANNEL})
        return
    session.execute(update(Counter).where(Counter.name == CHANGES).values(value=Counter.value + 1))


def notify(session: Session, channel: str = CHANGES_CHANNEL) -> None:
    """Wake listeners of ``channel`` when this transaction commits (PostgreSQL; on SQLite
    every commit is seen through data_version, so there is nothing to send)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_NOTIFY, {"channel": channel})


def stream_moved(
    session: Session, node_id: str, gen: int, *, hub_id: str, from_hub_id: str
) -> None:
    """A node's stream opened on ``hub_id`` (generation ``gen``) while ``from_hub_id`` held
    one: tell that hub on commit, so it closes its older stream (PostgreSQL; SQLite has one
    hub, whose registry supersedes in memory)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            _NOTIFY_STREAM,
            {"channel": STREAMS_CHANNEL, "rest": stream_note(node_id, gen, hub_id, from_hub_id)},
        )


def task_ended(session: Session, task_ids: Sequence[str] = ()) -> None:
    """Tasks reached a terminal state (or got output): wake `tasks wait`, `tasks logs -f`
    and every hub's WaitTask/WatchTask waiters on commit, not the reconcilers. The payload
    names the tasks (``tasks_note``); none named wakes every waiter."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_NOTIFY_TASKS, {"channel": TASKS_CHANNEL, "rest": tasks_note(task_ids)})


def tasks_note(task_ids: Sequence[str]) -> str:
    """What follows the schema in a ``cortex_tasks`` payload: " ID ID ..." or ""."""
    if not task_ids or len(task_ids) > NOTE_MAX_TASKS:
        return ""
    return " " + " ".join(task_ids)


def current(session: Session) -> int:
    return session.scalar(select(Counter.value).where(Counter.name == CHANGES)) or 0
