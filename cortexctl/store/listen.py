"""Waiting for another process's commit without polling the tables.

PostgreSQL: ``LISTEN`` on a dedicated autocommit connection; writers ``pg_notify`` in the
transaction that makes the change (``core.changes``), so the notification arrives when,
and only if, it commits. The payload is the writer's schema, so stores sharing one
database in different schemas do not wake each other.

SQLite has no notifications. The cheapest honest signal is ``PRAGMA data_version`` on a
dedicated connection: it changes whenever any other connection (any process) committed,
and reading it is a look at the WAL index in shared memory (measured under load: ≈ 7 µs a
call; polled every 5 ms ≈ 1 % of a core, in a thread off the event loop). A unix datagram
wake socket costs nothing idle (≈ 10 µs a wake) but only wakes for writers that poke it;
data_version sees a commit by any process or tool, so it is the honest choice. With
``counter=True`` a change wakes only if the change counter moved too (the hub's own
presence writes then do not wake its reconciler).

Both are blocking and meant for one thread (the hub's wake-up thread, or the CLI's wait
loop); every caller keeps its periodic check as the safety net: ``wait`` may return True
spuriously and, after an error, returns True so the caller looks.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import make_url

CHANGES_CHANNEL = "cortex_changes"  # writes a hub acts on (every change-counter bump)
TASKS_CHANNEL = "cortex_tasks"  # a task ended or got output; payload "SCHEMA [ID ...]"
# A node's stream opened on one hub while another held one; the payload after the schema
# is "NODE GEN HUB FROM_HUB" (``stream_note``): the hub FROM_HUB closes its older stream.
STREAMS_CHANNEL = "cortex_streams"
SQLITE_POLL_S = 0.005
COUNTER_QUERY = "SELECT value FROM counters WHERE name = 'changes'"


@dataclass(frozen=True)
class StreamMoved:
    """A node's stream opened on ``hub_id`` with generation ``gen``; ``from_hub_id`` held an
    older one."""

    node_id: str
    gen: int
    hub_id: str
    from_hub_id: str


def stream_note(node_id: str, gen: int, hub_id: str, from_hub_id: str) -> str:
    return f"{node_id} {gen} {hub_id} {from_hub_id}"


def parse_stream_note(text: str) -> StreamMoved | None:
    parts = text.split(" ")
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return StreamMoved(parts[0], int(parts[1]), parts[2], parts[3])


class ChangeListener:
    def __init__(
        self,
        url: str,
        channels: Sequence[str] = (CHANGES_CHANNEL,),
        *,
        counter: bool = False,
        sqlite_poll_s: float = SQLITE_POLL_S,
        on_stream_moved: Callable[[StreamMoved], object] | None = None,
        on_tasks: Callable[[tuple[str, ...]], object] | None = None,
    ) -> None:
        """``on_stream_moved``: also LISTEN on ``STREAMS_CHANNEL`` and call it (from the
        waiting thread) for each note of this schema; ``wait`` goes on waiting.
        ``on_tasks``: the same for ``TASKS_CHANNEL``, with the task ids a note names (none:
        any task)."""
        self.url = make_url(url)
        self.on_stream_moved = on_stream_moved
        self.on_tasks = on_tasks
        extra = []
        if on_stream_moved and STREAMS_CHANNEL not in channels:
            extra.append(STREAMS_CHANNEL)
        if on_tasks and TASKS_CHANNEL not in channels:
            extra.append(TASKS_CHANNEL)
        self.channels = tuple(channels) + tuple(extra)
        self.counter = counter
        self.sqlite_poll_s = sqlite_poll_s
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._sqlite: sqlite3.Connection | None = None
        self._pg: Any = None
        self._schema = ""
        self._version: int | None = None
        self._count: int | None = None

    # --- SQLite ---------------------------------------------------------------------------

    def _sqlite_connection(self) -> sqlite3.Connection:
        if self._sqlite is None:
            path = self.url.database or ""
            self._sqlite = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._sqlite.execute("PRAGMA busy_timeout=1000")
            self._version = self._data_version()
            self._count = self._counter() if self.counter else None
        return self._sqlite

    def _data_version(self) -> int:
        assert self._sqlite is not None
        return int(self._sqlite.execute("PRAGMA data_version").fetchone()[0])

    def _counter(self) -> int | None:
        assert self._sqlite is not None
        row = self._sqlite.execute(COUNTER_QUERY).fetchone()
        return None if row is None else int(row[0])

    def _wait_sqlite(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        self._sqlite_connection()
        while True:
            version = self._data_version()
            if version != self._version:
                self._version = version
                if not self.counter:
                    return True
                count = self._counter()
                if count != self._count:
                    self._count = count
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(self.sqlite_poll_s, remaining))

    # --- PostgreSQL -----------------------------------------------------------------------

    def _pg_connection(self) -> Any:
        if self._pg is None:
            import psycopg

            conninfo = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
            conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
            self._schema = str(conn.execute("SELECT current_schema()").fetchone()[0])  # type: ignore[index]
            for channel in self.channels:
                conn.execute(f'LISTEN "{channel}"')
            self._pg = conn
        return self._pg

    def _wait_pg(self, timeout: float) -> bool:
        conn = self._pg_connection()
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            for note in conn.notifies(timeout=remaining, stop_after=1):
                schema, _, rest = note.payload.partition(" ")
                if note.channel == STREAMS_CHANNEL:
                    moved = parse_stream_note(rest) if schema == self._schema else None
                    if moved is not None and self.on_stream_moved is not None:
                        self.on_stream_moved(moved)
                elif schema not in ("", self._schema):
                    continue  # another store in the same database
                elif note.channel == TASKS_CHANNEL and self.on_tasks is not None:
                    self.on_tasks(tuple(rest.split()))
                else:
                    return True
        return False

    # --- both -----------------------------------------------------------------------------

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` s for a change; True if there may have been one."""
        try:
            return self._wait_sqlite(timeout) if self.is_sqlite else self._wait_pg(timeout)
        except Exception:  # noqa: BLE001 - a lost connection: reconnect next time, look now
            self.close()
            time.sleep(min(timeout, 0.5))
            return True

    def pause(self, interval_s: float) -> Callable[[float], object]:
        """A ``core.clock.Pause``: until a change, at most ``interval_s`` (or less)."""

        def pause(at_most_s: float) -> None:
            self.wait(max(0.0, min(interval_s, at_most_s)))

        return pause

    def close(self) -> None:
        for conn in (self._sqlite, self._pg):
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        self._sqlite = self._pg = None
