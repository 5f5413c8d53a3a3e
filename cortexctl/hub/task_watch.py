"""Who waits on which task, in this hub's memory: WaitTask and WatchTask wake as soon as
this hub records a change of the task (a node's report, live output) or hears of one
(NOTIFY on ``cortex_tasks`` from another hub or the CLI; on SQLite, a change-counter move),
with the hub's poll as the safety net. A watch lives for one call and is removed on every
exit path (``add`` ... ``remove`` in a ``finally``), so a client that goes away leaves
nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from cortexctl.core.live_output import Chunk


@dataclass(eq=False)
class Watch:
    task_id: str
    event: asyncio.Event = field(default_factory=asyncio.Event)
    chunks: list[Chunk] = field(default_factory=list)  # live output since the last take
    dirty: bool = False  # the task may have changed in the store: read it again

    async def wait(self, timeout: float) -> bool:
        """Until something happened to the task, or ``timeout`` (the safety net); True if
        the task must be read again (a change, or the safety net), False for output only."""
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except TimeoutError:
            self.dirty = True
        self.event.clear()
        dirty, self.dirty = self.dirty, False
        return dirty

    def take_chunks(self) -> list[Chunk]:
        chunks, self.chunks = self.chunks, []
        return chunks


class TaskWatches:
    def __init__(self) -> None:
        self._by_task: dict[str, set[Watch]] = {}
        self.wakes = 0  # for metrics

    def __len__(self) -> int:
        return sum(len(watches) for watches in self._by_task.values())

    def watching(self, task_id: str) -> bool:
        return task_id in self._by_task

    def add(self, task_id: str) -> Watch:
        """Watch a task until ``remove`` (in a ``finally``: every exit path)."""
        watch = Watch(task_id)
        self._by_task.setdefault(task_id, set()).add(watch)
        return watch

    def remove(self, watch: Watch) -> None:
        watches = self._by_task.get(watch.task_id)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._by_task[watch.task_id]

    def changed(self, task_ids: Iterable[str] = ()) -> None:
        """These tasks changed (none named: any task may have)."""
        ids = tuple(task_ids)
        for task_id in ids or tuple(self._by_task):
            for watch in self._by_task.get(task_id, ()):
                self.wakes += 1
                watch.dirty = True
                watch.event.set()

    def output(self, chunk: Chunk) -> None:
        """Live output accepted for a task: hand it to its watchers now."""
        for watch in self._by_task.get(chunk.task_id, ()):
            watch.chunks.append(chunk)
            watch.event.set()
