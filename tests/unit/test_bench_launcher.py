"""The one hub-process launcher (cortexctl.bench.launcher) that tests, benchmarks and
`cortexctl bench` share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cortexctl.bench.launcher import start_hub


def test_a_hub_that_cannot_start_raises_with_its_log(tmp_path: Path) -> None:
    env = {**os.environ, "CORTEX_DATA_DIR": str(tmp_path / "data")}
    with pytest.raises(RuntimeError, match="no such option"):
        start_hub(tmp_path / "hub", env, "--no-such-flag")


def test_a_hub_starts_serves_and_stops(tmp_path: Path) -> None:
    env = {**os.environ, "CORTEX_DATA_DIR": str(tmp_path / "data")}
    env.pop("CORTEX_DATABASE_URL", None)
    hub = start_hub(tmp_path / "hub", env, "--heartbeat-interval", "1s")
    try:
        assert hub.address.startswith("127.0.0.1:") and hub.hub_id
        assert hub.alive()
    finally:
        assert hub.stop() == 0
    assert not hub.alive()
