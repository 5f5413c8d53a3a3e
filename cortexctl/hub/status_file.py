"""`serve --status-file`: a JSON snapshot of the mesh, rewritten on an interval."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cortexctl.core import status as core_status
from cortexctl.core.views import to_jsonable
from cortexctl.hub.atomic import write_atomic
from cortexctl.hub.runtime import HubRuntime
from cortexctl.hub.scheduler import Job


def status_file_job(rt: HubRuntime, path: Path, interval_s: float, address: str) -> Job:
    """A JSON snapshot of the mesh, written atomically off the event loop."""

    def write() -> dict[str, Any]:
        with rt.executor.store.session() as session:
            snap = core_status.snapshot(session, rt.options.sandbox, with_jobs=True)
        document = {
            "hub": {
                "id": rt.hub_id,
                "address": address,
                "pid": os.getpid(),
                "connected_nodes": len(rt.streams),
                "store": rt.executor.health.view(),
                "disk_ballast": rt.ballast.view() if rt.ballast is not None else None,
            },
            **to_jsonable(snap),
        }
        write_atomic(path, json.dumps(document, indent=2) + "\n")
        return {}

    async def run() -> dict[str, Any]:
        return await rt.executor.run(write, timeout=30.0, what="the status file")

    return Job("status_file", interval_s, run, run_at_start=True)
