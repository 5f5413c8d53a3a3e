"""core.live_output: offsets drop repeats, a gap starts a new run, the cap holds, a
batch leaves memory only once stored; agent.output coalesces within the batch size."""

from __future__ import annotations

import asyncio

from cortexctl.agent.output import OutputSender
from cortexctl.core.live_output import STDERR, STDOUT, LiveOutput, past
from cortexctl.proto import mesh_pb2 as pb


def test_repeats_are_dropped_and_the_cap_holds() -> None:
    live = LiveOutput(cap=10)
    first = live.accept("t", STDOUT, 0, b"hello")
    assert first is not None and (first.offset, first.data) == (0, b"hello")
    assert live.accept("t", STDOUT, 0, b"hello") is None  # a resend
    overlap = live.accept("t", STDOUT, 3, b"lo world")
    assert overlap is not None and (overlap.offset, overlap.data) == (5, b" worl")
    assert live.accept("t", STDOUT, 10, b"more") is None  # past the cap
    assert live.pending("t", STDOUT) == (0, b"hello worl")
    assert live.pending("t", STDERR) == (0, b"")


def test_a_batch_leaves_memory_once_stored_and_comes_back_if_not() -> None:
    live = LiveOutput(cap=100)
    live.accept("t", STDOUT, 0, b"abc")
    batch = live.take()
    assert [(a.offset, a.data) for a in batch] == [(0, b"abc")]
    live.accept("t", STDOUT, 3, b"def")  # arrives while the write is out
    live.unstored(batch)
    again = live.take()
    assert [(a.offset, a.data) for a in again] == [(0, b"abcdef")]
    live.stored(again)
    assert live.pending("t", STDOUT) == (6, b"")
    assert live.take() == []
    live.forget("t")
    assert len(live) == 0


def test_past_skips_what_a_watcher_was_shown() -> None:
    assert past(0, 0, b"abc") == (b"abc", 3)
    assert past(2, 0, b"abc") == (b"c", 3)
    assert past(5, 0, b"abc") == (b"", 5)
    assert past(2, 4, b"xy") == (b"xy", 6)  # a gap: shown from where it starts


def test_the_agent_coalesces_output_into_batches() -> None:
    sent: list[pb.NodeMessage] = []

    async def run() -> None:
        sender = OutputSender("t", sent.append, flush_s=60.0, flush_bytes=8)
        sender(STDOUT, 0, b"ab")
        sender(STDOUT, 2, b"cd")
        sender(STDERR, 0, b"e")
        assert sent == []  # held until the timer or the batch size
        sender(STDOUT, 4, b"efghij")  # 10 bytes: sent at once, in pieces of at most 8
        assert [(m.task_output.offset, m.task_output.data) for m in sent] == [
            (0, b"abcdefgh"),
            (8, b"ij"),
        ]
        sender.flush()  # what the timer does, and the runner before the result
        assert sent[-1].task_output.stream == STDERR and sent[-1].task_output.data == b"e"

    asyncio.run(run())
