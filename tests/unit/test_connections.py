"""hub/connections.py: the connection cap's sizing, the fd limit raise, shedding reports."""

from __future__ import annotations

import logging
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from cortexctl.hub.connections import (
    FD_FLOOR,
    LOG_EVERY_S,
    ConnectionStats,
    connection_cap,
)

REPO = Path(__file__).resolve().parents[2]


def test_the_cap_leaves_descriptors_for_the_store_mirrors_and_logs() -> None:
    # 1024: a floor of 128, a tenth (102) and two per store connection (5) are kept.
    assert connection_cap(1024, 5) == 1024 - FD_FLOOR - 102 - 10 == 784
    for limit in (1024, 4096, 65_536, 1_048_576):
        cap = connection_cap(limit, 10)
        assert limit * 0.85 - FD_FLOOR - 20 <= cap < limit - FD_FLOOR - 20
    assert connection_cap(1024, 50) < connection_cap(1024, 5)  # more store connections


def test_a_configured_cap_is_used_but_never_above_what_the_fd_limit_leaves() -> None:
    assert connection_cap(1024, 5, configured=500) == 500
    assert connection_cap(1024, 5, configured=5000) == 784
    assert connection_cap(100, 5) == 16  # a tiny limit still takes some connections


def test_the_soft_fd_limit_is_raised_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard open-file limit ({hard}) leaves nothing to raise")
    script = (
        "import resource\n"
        "from cortexctl.hub.connections import fd_limit, raise_fd_limit\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "assert fd_limit() == 256\n"
        "soft, _ = raise_fd_limit()\n"
        "print(soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0], fd_limit())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    soft, now, seen = map(int, done.stdout.split())
    expected = hard if hard != resource.RLIM_INFINITY else 1_048_576
    assert soft == now == seen == expected


def shedding_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("shedding")]


def test_shedding_is_logged_at_most_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cortexctl.hub")
    stats = ConnectionStats(fd_limit=1024, cap=100)
    stats.observe(94, now=5.0)  # below 95 % of the cap
    assert not stats.shedding and shedding_lines(caplog) == []
    stats.observe(95, now=10.0)  # the first line comes at once, even early after boot
    assert stats.shedding and stats.shedding_since == 10.0
    [line] = shedding_lines(caplog)
    assert "95 sockets" in line and "cap is 100" in line and "1024" in line
    for now in (11.0, 30.0, 10.0 + LOG_EVERY_S - 0.1):
        stats.observe(100, now=now)
    assert len(shedding_lines(caplog)) == 1  # rate-limited while shedding goes on
    assert stats.shedding_checks == 4 and stats.shedding_since == 10.0
    stats.observe(100, now=10.0 + LOG_EVERY_S)
    assert len(shedding_lines(caplog)) == 2


def test_shedding_ends_when_sockets_fall_below_the_cap(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cortexctl.hub")
    stats = ConnectionStats(fd_limit=1024, cap=100)
    stats.observe(99, now=100.0)
    stats.observe(50, now=101.0)
    assert not stats.shedding and stats.shedding_since is None and stats.sockets == 50
    assert any("no longer shedding" in r.getMessage() for r in caplog.records)
    stats.observe(99, now=102.0)  # a new episode within the minute: counted, not logged
    assert stats.shedding and stats.shedding_since == 102.0
    assert len(shedding_lines(caplog)) == 1 and stats.shedding_checks == 2
    stats.observe(-1, now=103.0)  # sockets could not be counted: never shedding
    assert not stats.shedding
