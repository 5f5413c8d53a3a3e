"""Cross-cutting concerns of the hub's own RPCs: typed errors mapped to gRPC status once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from cortexctl.errors import CortexError

log = logging.getLogger("cortexctl.hub")
SERVICE_PREFIX = "/cortex.mesh.v1."


def _map_errors(
    behavior: Callable[..., Awaitable[Any]], method: str
) -> Callable[..., Awaitable[Any]]:
    async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(request, context)
        except CortexError as err:
            log.info(
                "%s from %s: %s %s", method.rsplit("/", 1)[-1], context.peer(), err.grpc_status, err
            )
            await context.abort(getattr(grpc.StatusCode, err.grpc_status), str(err))
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception:
            log.exception("unexpected error in %s", method)
            await context.abort(
                grpc.StatusCode.INTERNAL, "internal error in the hub; the hub log has the details"
            )

    return wrapped


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(SERVICE_PREFIX):
            return handler
        # Our servicer methods are coroutines; the stubs type handlers as plain callables.
        behaviors: Any = handler
        wrap_args: Any = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _map_errors(behaviors.unary_unary, method), **wrap_args
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _map_errors(behaviors.stream_unary, method), **wrap_args
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                _map_errors(behaviors.stream_stream, method), **wrap_args
            )
        return handler
