"""The hub's id, kept in its data dir."""

from __future__ import annotations

import secrets
from pathlib import Path

from cortexctl.core.permissions import PRIVATE, HubModes, make_dir, write_private


def hub_identity(data_dir: Path, instance: int | None = None, modes: HubModes = PRIVATE) -> str:
    """This hub's id, kept in its data dir so a restart knows the tasks it left behind.

    Process ``instance`` of `serve --processes N` keeps its own (instance 0 the plain one).
    """
    path = data_dir / ("hub_id" if not instance else f"hub_id.{instance}")
    try:
        existing = path.read_text().strip()
        if existing:
            return existing
    except FileNotFoundError:
        pass
    make_dir(data_dir, modes)
    hub_id = f"hub_{secrets.token_hex(6)}"
    write_private(path, hub_id + "\n", modes)
    return hub_id
