"""The upload RPCs in flight, per node, so that revoking a node cuts them at once.

A SyncFile call authenticates once, at its start; without this an upload begun before a
revocation would go on for as long as the node keeps sending. The reconciler, on seeing a
node revoked (or its credential rotated), cancels that node's upload tasks with the error
they end with. Entries leave when their call ends, whatever ends it.
"""

from __future__ import annotations

import asyncio

from cortexctl.errors import CortexError


class InFlightUploads:
    def __init__(self) -> None:
        self._by_node: dict[str, set[asyncio.Task[object]]] = {}
        self._cut: dict[asyncio.Task[object], CortexError] = {}

    def add(self, node_id: str, task: asyncio.Task[object]) -> None:
        self._by_node.setdefault(node_id, set()).add(task)

    def discard(self, node_id: str, task: asyncio.Task[object]) -> None:
        tasks = self._by_node.get(node_id)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._by_node[node_id]
        self._cut.pop(task, None)

    def node_ids(self) -> set[str]:
        return set(self._by_node)

    def count(self, node_id: str) -> int:
        return len(self._by_node.get(node_id, ()))

    def cut(self, node_id: str, error: CortexError) -> int:
        """Cancel every upload of ``node_id``; each ends with ``error``. Returns how many."""
        tasks = self._by_node.get(node_id, set())
        for task in tasks:
            if task not in self._cut:
                self._cut[task] = error
                task.cancel()
        return len(tasks)

    def reason(self, task: asyncio.Task[object]) -> CortexError | None:
        """The error a cut task ends with, or None if it was cancelled for another reason."""
        return self._cut.get(task)
