from __future__ import annotations

import pytest

from cortexctl.errors import ResourceExhausted
from cortexctl.hub.ratelimit import FailureLimiter, peer_host


def test_peer_host_drops_the_port() -> None:
    assert peer_host("ipv4:127.0.0.1:5555") == "ipv4:127.0.0.1"
    assert peer_host("ipv6:[::1]:5555") == "ipv6:[::1]"
    assert peer_host("unix:/tmp/sock") == "unix:/tmp/sock"


def test_limit_per_peer_and_bounded_memory() -> None:
    limiter = FailureLimiter(max_failures=2, window_s=60, max_peers=100)
    for _ in range(2):
        limiter.check("ipv4:10.0.0.1:1")
        limiter.failed("ipv4:10.0.0.1:2")
    with pytest.raises(ResourceExhausted, match="too many failed handshakes"):
        limiter.check("ipv4:10.0.0.1:3")
    limiter.check("ipv4:10.0.0.2:1")  # another peer is unaffected
    for index in range(10_000):
        limiter.failed(f"ipv4:10.1.{index // 256}.{index % 256}:1")
    assert len(limiter) == 100


def test_windows_expire_and_sweep_forgets() -> None:
    limiter = FailureLimiter(max_failures=1, window_s=0.0)
    limiter.failed("ipv4:10.0.0.1:1")
    limiter.check("ipv4:10.0.0.1:1")
    limiter.failed("ipv4:10.0.0.3:1")
    assert limiter.sweep() == 1
    assert len(limiter) == 0
