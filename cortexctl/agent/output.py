"""Live output of a running task to the hub (``TaskOutput``), coalesced.

What the executor keeps of a task's output (within the output cap) is gathered per
stream and sent every ``FLUSH_S``, or at once when ``FLUSH_BYTES`` are waiting, whichever
comes first; each message carries its offset in the stream so the hub drops a repeat.
Only to a hub that lists ``task.output`` in its handshake answer; the terminal result
still carries the whole output and stays authoritative.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from cortexctl.core.live_output import FLUSH_BYTES, FLUSH_S, STREAMS
from cortexctl.proto import mesh_pb2 as pb


class OutputSender:
    def __init__(
        self,
        task_id: str,
        send: Callable[[pb.NodeMessage], object],
        *,
        flush_s: float = FLUSH_S,
        flush_bytes: int = FLUSH_BYTES,
    ) -> None:
        self.task_id = task_id
        self._send = send
        self._flush_s = flush_s
        self._flush_bytes = flush_bytes
        self._pending: dict[int, tuple[int, bytearray]] = {}  # stream -> (offset, bytes)
        self._timer: asyncio.TimerHandle | None = None
        self.sent = 0  # messages, for tests and logs

    def __call__(self, stream: int, offset: int, data: bytes) -> None:
        """The executor kept ``data`` at ``offset`` of ``stream`` (on the event loop)."""
        if stream not in STREAMS or not data:
            return
        held = self._pending.get(stream)
        if held is None or held[0] + len(held[1]) != offset:
            if held is not None:
                self._flush_stream(stream)
            self._pending[stream] = (offset, bytearray(data))
        else:
            held[1].extend(data)
        if len(self._pending[stream][1]) >= self._flush_bytes:
            self._flush_stream(stream)
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_s, self.flush)

    def _flush_stream(self, stream: int) -> None:
        held = self._pending.pop(stream, None)
        if held is None:
            return
        offset, data = held
        for at in range(0, len(data), self._flush_bytes):  # no message above the batch size
            piece = bytes(data[at : at + self._flush_bytes])
            self._send(
                pb.NodeMessage(
                    task_output=pb.TaskOutput(
                        task_id=self.task_id,
                        stream=cast("pb.OutputStream", stream),
                        data=piece,
                        offset=offset + at,
                    )
                )
            )
            self.sent += 1

    def flush(self) -> None:
        """Send what is waiting (the timer, and once more before the task's result)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for stream in list(self._pending):
            self._flush_stream(stream)
