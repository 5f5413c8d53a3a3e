"""HOST:PORT addresses, shared by the hub and the agent."""

from __future__ import annotations

from cortexctl.errors import UsageError

LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"bad address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:50051")
    return host, int(port)


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")
