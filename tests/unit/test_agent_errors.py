"""The agent maps each gRPC status the hub answers to its own typed error, and retries only
what retrying can cure."""

from __future__ import annotations

import grpc
import pytest

from cortexctl import errors
from cortexctl.agent.transport import RETRYABLE, retryable, rpc_error

EXPECTED: dict[grpc.StatusCode, type[errors.CortexError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.Unavailable,
    grpc.StatusCode.ABORTED: errors.Conflict,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.DATA_LOSS: errors.DataLoss,
}


def answered(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "details")


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda code: code.name)
def test_each_status_maps_to_its_own_error(code: grpc.StatusCode) -> None:
    if code == grpc.StatusCode.OK:
        return
    err = rpc_error(answered(code))
    assert type(err) is EXPECTED.get(code, errors.CortexError)
    assert code.name in str(err) and "details" in str(err)


def test_only_unauthenticated_is_unauthenticated() -> None:
    mapped = {
        code
        for code in grpc.StatusCode
        if isinstance(rpc_error(answered(code)), errors.Unauthenticated)
    }
    assert mapped == {grpc.StatusCode.UNAUTHENTICATED}


def test_retries_only_what_retrying_can_cure() -> None:
    for code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,  # superseded by a newer stream of the same node
    ):
        assert retryable(answered(code))
    for code in (
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.FAILED_PRECONDITION,
    ):
        assert not retryable(answered(code))
    assert grpc.StatusCode.OK not in RETRYABLE
