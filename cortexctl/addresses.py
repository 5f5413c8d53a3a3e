"""HOST:PORT addresses, shared by the hub and the agent."""

from __future__ import annotations

import ipaddress
import socket

from cortexctl.errors import InvalidArgument


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise InvalidArgument(f"bad address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:50051")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """True only if every address ``host`` resolves to is a loopback address.

    Decided from the resolved addresses (getaddrinfo), never from how the name looks: a
    name such as ``127.0.0.1.example.com`` or a ``localhost`` that resolves elsewhere is
    not loopback. A name that does not resolve is not loopback either.
    """
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(literal).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(literal, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {str(info[4][0]) for info in infos}
    return bool(addresses) and all(_loopback_address(a) for a in addresses)


def _loopback_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def check_transport(listen: str, *, insecure: bool, tls: bool) -> bool:
    """Refuse plaintext off loopback unless ``insecure``; True when serving it anyway."""
    host, _ = split_address(listen)
    if tls or is_loopback(host):
        return False
    if not insecure:
        raise InvalidArgument(
            f"refusing to listen on non-loopback {listen} without TLS; pass "
            "--tls-cert/--tls-key, or --insecure if a trusted network is meant"
        )
    return True
