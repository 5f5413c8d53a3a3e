"""Typed errors raised by core; each edge maps them once (exit code, gRPC status).

Exit codes (the one table every command uses):

    0 ok · 1 failed · 2 usage · 3 not found · 4 unavailable · 5 conflict
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_CONFLICT = 5


class CortexError(Exception):
    """Base of every error a person can act on; ``str(err)`` is the message."""

    exit_code = EXIT_FAILED
    grpc_status = "INTERNAL"  # name of a grpc.StatusCode member


class UsageError(CortexError):
    exit_code = EXIT_USAGE
    grpc_status = "INVALID_ARGUMENT"


class InvalidArgument(CortexError):
    exit_code = EXIT_USAGE
    grpc_status = "INVALID_ARGUMENT"


class NotFound(CortexError):
    exit_code = EXIT_NOT_FOUND
    grpc_status = "NOT_FOUND"


class Unavailable(CortexError):
    exit_code = EXIT_UNAVAILABLE
    grpc_status = "UNAVAILABLE"


class Conflict(CortexError):
    exit_code = EXIT_CONFLICT
    grpc_status = "ABORTED"


class Unauthenticated(CortexError):
    grpc_status = "UNAUTHENTICATED"


class PermissionDenied(CortexError):
    grpc_status = "PERMISSION_DENIED"


class ResourceExhausted(CortexError):
    grpc_status = "RESOURCE_EXHAUSTED"


class DataLoss(CortexError):
    grpc_status = "DATA_LOSS"


class Aborted(CortexError):
    exit_code = EXIT_CONFLICT
    grpc_status = "ABORTED"


class ConfigError(CortexError):
    exit_code = EXIT_USAGE
