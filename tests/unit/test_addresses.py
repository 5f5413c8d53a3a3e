"""Loopback is decided from the resolved addresses, never from how a name looks."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from cortexctl.addresses import is_loopback


def resolving_to(*addresses: str) -> Any:
    def fake(host: str, *args: Any, **kwargs: Any) -> list[Any]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
            for a in addresses
        ]

    return fake


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost"])
def test_loopback_addresses_and_names_are_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "10.0.0.1", "::", "127.0.0.1.example.invalid", "127.example.invalid"]
)
def test_names_that_merely_look_loopback_are_not(host: str) -> None:
    assert not is_loopback(host)


def test_localhost_resolving_elsewhere_is_not_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to("127.0.0.1", "203.0.113.7"))
    assert not is_loopback("localhost")  # every resolved address must be loopback
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to("127.0.0.1", "::1"))
    assert is_loopback("hub.internal")
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to("::ffff:127.0.0.1"))
    assert is_loopback("mapped.internal")
