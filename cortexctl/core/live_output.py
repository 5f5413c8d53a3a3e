"""Live output of running tasks (``TaskOutput``), in a hub's memory until it is stored.

A node sends a running task's output in chunks, each with its offset in its stream. The
hub keeps, per task and stream, the bytes received past what the store is known to hold
(``base``): a repeated chunk (a resend, or a node that came back) is dropped by its
offset, a chunk past a gap starts a new run (what is missing is in the final result),
and nothing past the output cap is kept. ``take`` hands the unstored bytes to one batched
write (``journal.append_output``), ``stored`` drops them once it committed; the final
``task_update`` of the task stays authoritative (``journal.record_update`` overwrites).
Everything here runs on the hub's event loop and never touches the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STDOUT = 1  # OutputStream numbers of mesh.proto
STDERR = 2
STREAMS = (STDOUT, STDERR)
# The agent sends what it has every FLUSH_S, or at once when FLUSH_BYTES are waiting.
FLUSH_S = 0.1
FLUSH_BYTES = 32 * 1024
MAX_TASKS = 65536  # tasks with live output kept at once; beyond, the oldest is forgotten


@dataclass
class _Run:
    base: int = 0  # offset of buf[0]: the store holds (or held, before a gap) what is before
    buf: bytearray = field(default_factory=bytearray)
    taken: int = 0  # bytes of buf handed to a write not yet committed

    @property
    def end(self) -> int:
        return self.base + len(self.buf)


@dataclass(frozen=True)
class Chunk:
    """Bytes accepted for a task's stream, at ``offset`` in it."""

    task_id: str
    stream: int
    offset: int
    data: bytes


@dataclass(frozen=True)
class Append:
    """One stream's unstored bytes for one batched write: ``data`` goes at ``offset``."""

    task_id: str
    stream: int
    offset: int
    data: bytes


class LiveOutput:
    def __init__(self, cap: int) -> None:
        self.cap = cap  # per stream, as for a result (the sandbox's max_output_bytes)
        self._runs: dict[str, dict[int, _Run]] = {}
        self.dropped = 0  # bytes of repeated chunks or past the cap, for metrics

    def __len__(self) -> int:
        return len(self._runs)

    def accept(self, task_id: str, stream: int, offset: int, data: bytes) -> Chunk | None:
        """The part of a chunk that is new and within the cap, or None."""
        if stream not in STREAMS or not data:
            return None
        runs = self._runs.get(task_id)
        if runs is None:
            if len(self._runs) >= MAX_TASKS:
                del self._runs[next(iter(self._runs))]
            runs = self._runs[task_id] = {}
        run = runs.get(stream)
        if run is None:
            run = runs[stream] = _Run(base=offset)
        if offset > run.end:
            if run.taken:
                self.dropped += len(data)
                return None  # a gap while a write is out: the result fills it
            run.base, run.buf = offset, bytearray()  # a gap: the result fills it
        skip = run.end - offset
        room = self.cap - run.end
        new = data[skip : skip + max(0, room)] if skip < len(data) else b""
        self.dropped += len(data) - len(new)
        if not new:
            return None
        at = run.end
        run.buf += new
        return Chunk(task_id, stream, at, bytes(new))

    def take(self) -> list[Append]:
        """Every run's bytes not yet handed to a write (one batch)."""
        batch = []
        for task_id, runs in self._runs.items():
            for stream, run in runs.items():
                if len(run.buf) > run.taken:
                    batch.append(
                        Append(task_id, stream, run.base + run.taken, bytes(run.buf[run.taken :]))
                    )
                    run.taken = len(run.buf)
        return batch

    def stored(self, batch: list[Append]) -> None:
        """A batch committed: its bytes leave memory."""
        for item in batch:
            run = self._runs.get(item.task_id, {}).get(item.stream)
            if run is None:
                continue
            done = item.offset + len(item.data) - run.base
            if 0 < done <= run.taken:
                del run.buf[:done]
                run.base += done
                run.taken -= done

    def unstored(self, batch: list[Append]) -> None:
        """A batch's write failed: hand its bytes to the next one."""
        for item in batch:
            run = self._runs.get(item.task_id, {}).get(item.stream)
            if run is not None:
                run.taken = min(run.taken, max(0, item.offset - run.base))

    def pending(self, task_id: str, stream: int) -> tuple[int, bytes]:
        """(offset, bytes) received for the stream that the store may not hold yet."""
        run = self._runs.get(task_id, {}).get(stream)
        return (0, b"") if run is None else (run.base, bytes(run.buf))

    def forget(self, task_id: str) -> None:
        """The task ended (its result holds the output) or left this hub."""
        self._runs.pop(task_id, None)


def past(sent: int, offset: int, data: bytes) -> tuple[bytes, int]:
    """What of ``data`` (at ``offset`` in a stream) lies past the first ``sent`` bytes
    already shown, and how many bytes of the stream are shown after it."""
    new = data[max(0, sent - offset) :]
    return new, max(sent, offset) + len(new) if new else sent
