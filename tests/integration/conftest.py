from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Hub, Mesh, child_env


@pytest.fixture
def mesh(tmp_path: Path, store_env: dict[str, str], isolated_env: Path) -> Iterator[Mesh]:
    """A running `cortexctl serve` on loopback (0.5 s heartbeats); agents are started by tests."""
    env = child_env(store_env, isolated_env)
    hub = Hub(tmp_path / "hub", env)
    hub.workdir.mkdir()
    hub.start()
    mesh = Mesh(tmp_path, env, hub)
    try:
        yield mesh
    finally:
        mesh.close()
