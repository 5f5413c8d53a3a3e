"""Stream endings are typed errors, mapped to a status by the same table as any RPC's."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from cortexctl import errors
from cortexctl.hub.interceptors import status_code
from cortexctl.hub.streams import Close, NodeStream


def _error_classes() -> list[type[errors.CortexError]]:
    found: list[type[errors.CortexError]] = [errors.CortexError]
    for cls in found:
        found.extend(c for c in cls.__subclasses__() if c not in found)
    return found


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda cls: cls.__name__)
def test_every_typed_error_has_a_real_status(cls: type[errors.CortexError]) -> None:
    assert status_code(cls.__new__(cls)) == getattr(grpc.StatusCode, cls.grpc_status)


def test_a_stream_ends_as_a_typed_error_and_the_first_reason_wins() -> None:
    async def scenario() -> tuple[Close, Close | None]:
        stream = NodeStream(node_id="n1", node_name="a", peer="ipv4:127.0.0.1:1")
        stream.close("superseded by a newer stream", errors.Conflict)
        stream.close("closed its stream")  # too late: the first reason stays
        return await stream.outbox.get(), stream.closed

    queued, closed = asyncio.run(scenario())
    assert queued is closed
    assert isinstance(queued.error, errors.Conflict)
    assert str(queued.error) == queued.reason == "superseded by a newer stream"
    assert status_code(queued.error) == grpc.StatusCode.ABORTED


def test_a_stream_ended_without_an_error_ends_ok() -> None:
    async def scenario() -> Close | None:
        stream = NodeStream(node_id="n1", node_name="a", peer="ipv4:127.0.0.1:1")
        stream.close("node closed its stream")
        return stream.closed

    closed = asyncio.run(scenario())
    assert closed is not None and closed.error is None
