"""Cross-cutting concerns of the hub's own RPCs: typed errors mapped to gRPC status once,
and the one way an interceptor wraps a method's behaviour (``wrap_handler``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

from cortexctl.errors import CortexError

log = logging.getLogger("cortexctl.hub")
SERVICE_PREFIXES = ("/cortex.mesh.v1.", "/cortex.admin.v1.")

Behavior = Callable[..., Awaitable[Any]]
StreamBehavior = Callable[..., AsyncIterator[Any]]
# A string: grpc's classes are generic only to the type checker.
Continuation: TypeAlias = (
    "Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]]"
)


def status_code(err: CortexError) -> grpc.StatusCode:
    """The gRPC status a typed error becomes at the hub's edge: the one mapping, used by the
    interceptor (an RPC that raised) and the stream runtime (a stream ended as an error)."""
    return getattr(grpc.StatusCode, err.grpc_status, grpc.StatusCode.INTERNAL)


def wrap_handler(
    handler: grpc.RpcMethodHandler[Any, Any],
    awaited: Callable[[Behavior], Behavior],
    streamed: Callable[[StreamBehavior], StreamBehavior],
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with its behaviour wrapped: ``awaited`` for the kinds whose behaviour is
    a coroutine (unary or streamed requests), ``streamed`` for server-streaming ones."""
    # Our servicer methods are coroutines; the stubs type handlers as plain callables.
    behaviors: Any = handler
    wrap_args: Any = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(awaited(behaviors.unary_unary), **wrap_args)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(awaited(behaviors.stream_unary), **wrap_args)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streamed(behaviors.unary_stream), **wrap_args)
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(awaited(behaviors.stream_stream), **wrap_args)
    return handler


async def _abort(err: Exception, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if isinstance(err, CortexError):
        log.info(
            "%s from %s: %s %s", method.rsplit("/", 1)[-1], context.peer(), err.grpc_status, err
        )
        await context.abort(status_code(err), str(err))
    log.exception("unexpected error in %s", method, exc_info=err)
    await context.abort(
        grpc.StatusCode.INTERNAL, "internal error in the hub; the hub log has the details"
    )


def _map_errors(behavior: Behavior, method: str) -> Behavior:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(request, context)
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as err:
            await _abort(err, method, context)

    return wrapped


def _map_stream_errors(behavior: StreamBehavior, method: str) -> StreamBehavior:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            async for item in behavior(request, context):
                yield item
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as err:
            await _abort(err, method, context)

    return wrapped


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(SERVICE_PREFIXES):
            return handler
        return wrap_handler(
            handler,
            lambda behavior: _map_errors(behavior, method),
            lambda behavior: _map_stream_errors(behavior, method),
        )
