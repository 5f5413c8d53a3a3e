"""Wakes the reconciler when the store changed, instead of waiting for its poll.

A daemon thread blocks in ``store.listen.ChangeListener`` (PostgreSQL LISTEN on
``cortex_changes``; SQLite ``PRAGMA data_version`` then the change counter) and sets the
runtime's ``wake_reconciler`` event from the event loop's thread. The reconciler awaits
that event with its poll interval as the timeout, so the poll stays as the safety net; a
burst of changes sets the event many times and costs one pass. Tasks submitted, cancels,
policy changes and revocations all reach connected nodes this way.

On PostgreSQL the same connection LISTENs on ``cortex_streams``: a node whose stream opened
on another hub while this hub held one (``core.presence.claim_stream``) is handed to
``on_stream_moved`` on the event loop, which closes the older stream at once; and on
``cortex_tasks``: the ids of tasks that ended or got output anywhere go to ``on_tasks``
(the admin API's WaitTask and WatchTask waiters).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from cortexctl.store.listen import CHANGES_CHANNEL, ChangeListener, StreamMoved

log = logging.getLogger("cortexctl.hub")
WAIT_S = 0.5  # how often the thread looks whether it should stop


class WakeUp:
    def __init__(
        self,
        url: str,
        event: asyncio.Event,
        loop: asyncio.AbstractEventLoop,
        on_stream_moved: Callable[[StreamMoved], object] | None = None,
        on_tasks: Callable[[tuple[str, ...]], object] | None = None,
    ) -> None:
        self.listener = ChangeListener(
            url,
            (CHANGES_CHANNEL,),
            counter=True,
            on_stream_moved=None if on_stream_moved is None else self._moved,
            on_tasks=None if on_tasks is None else self._tasks,
        )
        self.event = event
        self.loop = loop
        self.on_stream_moved = on_stream_moved
        self.on_tasks = on_tasks
        self.wakes = 0
        self.moves = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cortex-wakeup", daemon=True)

    def start(self) -> WakeUp:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                if self.listener.wait(WAIT_S) and not self._stopping.is_set():
                    self.wakes += 1
                    self.loop.call_soon_threadsafe(self.event.set)
                    if self.listener.is_sqlite:
                        # No notes on SQLite: a cancel or a fail by the CLI moved the
                        # counter; every task waiter looks (one hub holds a SQLite store).
                        self._tasks(())
        except RuntimeError:
            pass  # the loop closed under us: the hub is gone
        finally:
            self.listener.close()

    def _moved(self, moved: StreamMoved) -> None:  # on the listener's thread
        if self.on_stream_moved is not None and not self._stopping.is_set():
            self.moves += 1
            self.loop.call_soon_threadsafe(self.on_stream_moved, moved)

    def _tasks(self, task_ids: tuple[str, ...]) -> None:  # on the listener's thread
        if self.on_tasks is not None and not self._stopping.is_set():
            self.loop.call_soon_threadsafe(self.on_tasks, task_ids)

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)


def start(
    url: str,
    event: asyncio.Event,
    on_stream_moved: Callable[[StreamMoved], object] | None = None,
    on_tasks: Callable[[tuple[str, ...]], object] | None = None,
) -> WakeUp:
    """Start waking ``event`` on store changes, and ``on_tasks`` with the ids of tasks
    that ended or got output (none: any); call from the event loop's thread."""
    return WakeUp(url, event, asyncio.get_running_loop(), on_stream_moved, on_tasks).start()
