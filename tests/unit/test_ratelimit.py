from __future__ import annotations

import pytest

from cortexctl.errors import ResourceExhausted
from cortexctl.hub.ratelimit import MALFORMED, FailureLimiter, guess_target, peer_host

INVITE = "invite:inv_000000000001"
OTHER = "invite:inv_000000000002"


def test_peer_host_drops_the_port() -> None:
    assert peer_host("ipv4:127.0.0.1:5555") == "ipv4:127.0.0.1"
    assert peer_host("ipv6:[::1]:5555") == "ipv6:[::1]"
    assert peer_host("unix:/tmp/sock") == "unix:/tmp/sock"


def test_the_target_is_what_is_being_guessed() -> None:
    assert guess_target("cortex-invite.inv_ab.secret") == "invite:inv_ab"
    assert guess_target(credential="cortex-node.nd_cd.secret") == "node:nd_cd"
    for junk in ("nope", "cortex-invite..x", "cortex-node.a.b.c"):
        assert guess_target(junk) == MALFORMED
        assert guess_target(credential=junk) == MALFORMED


def test_guesses_at_one_invite_never_lock_out_another_behind_the_same_address() -> None:
    limiter = FailureLimiter(max_failures=2, window_s=60, max_keys=100)
    for _ in range(2):
        limiter.check("ipv4:10.0.0.1:1", INVITE)
        limiter.failed("ipv4:10.0.0.1:2", INVITE)
    with pytest.raises(ResourceExhausted, match="invite inv_000000000001 from ipv4:10.0.0.1"):
        limiter.check("ipv4:10.0.0.1:3", INVITE)
    limiter.check("ipv4:10.0.0.1:3", OTHER)  # NAT: another node's invite is unaffected
    limiter.check("ipv4:10.0.0.2:1", INVITE)  # another address, within the target's budget


def test_many_addresses_cannot_share_out_the_guessing_of_one_target() -> None:
    limiter = FailureLimiter(max_failures=2, window_s=60, max_keys=1000)
    for index in range(20):  # 10 x 2 failures, each address within its own limit
        limiter.failed(f"ipv4:10.0.{index}.1:1", INVITE)
    with pytest.raises(ResourceExhausted, match="too many failed handshakes for invite"):
        limiter.check("ipv4:10.9.9.9:1", INVITE)
    limiter.check("ipv4:10.9.9.9:1", OTHER)


def test_malformed_tokens_share_one_hub_wide_budget() -> None:
    limiter = FailureLimiter(max_failures=2, window_s=60, max_keys=100)
    for index in range(100):  # 50 x 2, from as many addresses
        limiter.failed(f"ipv4:10.1.{index}.1:1", MALFORMED)
    with pytest.raises(ResourceExhausted, match="malformed tokens"):
        limiter.check("ipv4:10.2.0.1:1", MALFORMED)
    limiter.check("ipv4:10.2.0.1:1", INVITE)  # a well-formed token is still heard
    assert len(limiter) == 1  # garbage never fills the table


def test_memory_stays_bounded_whatever_is_guessed() -> None:
    limiter = FailureLimiter(max_failures=2, window_s=60, max_keys=100)
    for index in range(10_000):
        limiter.failed(f"ipv4:10.1.{index // 256}.{index % 256}:1", f"node:nd_{index}")
    assert len(limiter) == 100


def test_windows_expire_and_sweep_forgets() -> None:
    limiter = FailureLimiter(max_failures=1, window_s=0.0)
    limiter.failed("ipv4:10.0.0.1:1", INVITE)
    limiter.check("ipv4:10.0.0.1:1", INVITE)
    limiter.failed("ipv4:10.0.0.3:1", OTHER)
    assert limiter.sweep() == 2
    assert len(limiter) == 0
