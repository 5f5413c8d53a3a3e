"""Dispatch latency through the Python client: submit -> node runs `true` -> result.

A real `cortexctl serve` (SQLite by default, or --database-url, e.g. PostgreSQL; loopback)
and one real agent; each run is ``hub.submit(...)`` then ``task.wait()``. Prints p50/p99
over --runs with the store and the load average at the start and the end (figures drift
on shared machines: quote them with the load). Usage:

    .venv/bin/python benchmarks/bench_admin_dispatch.py --runs 40
    .venv/bin/python benchmarks/bench_admin_dispatch.py --database-url postgresql+psycopg://...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cortexctl.bench.launcher import start_hub
from cortexctl.client import Hub

CORTEXCTL = [sys.executable, "-m", "cortexctl"]


def cli(env: dict[str, str], *args: str) -> dict[str, object]:
    out = subprocess.run([*CORTEXCTL, *args, "--json"], env=env, capture_output=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument(
        "--database-url", default=None, help="the hub's store (default: a throwaway SQLite file)"
    )
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORTEX_")}
        env.update(
            CORTEX_DATA_DIR=str(root / "data"),
            CORTEX_DATABASE_URL=args.database_url or f"sqlite:///{root / 'data' / 'cortex.db'}",
            HOME=str(root),
        )
        (root / "data").mkdir()
        if args.database_url:
            subprocess.run([*CORTEXCTL, "db", "upgrade"], env=env, capture_output=True, check=True)
        hub = start_hub(root / "hub", env, "--log-format", "text")
        agent = None
        try:
            token = str(cli(env, "invites", "create")["token"])
            (root / "ws").mkdir()
            agent = subprocess.Popen(
                [*CORTEXCTL, "agent", "--hub", hub.address, "--token", token, "--workspace",
                 str(root / "ws"), "--state-dir", str(root / "state"), "--name", "n1"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            admin = str(
                cli(env, "admin-tokens", "create", "--role", "operator", "--name", "b")["token"]
            )
            with Hub.connect(hub.address, token=admin) as client:
                deadline = time.monotonic() + 60
                while not any(n.online for n in client.nodes()):
                    if time.monotonic() > deadline:
                        raise SystemExit("the agent did not come online")
                    time.sleep(0.2)
                cli(env, "nodes", "sandbox", "n1", "--strict", "--allow", "true")
                time.sleep(1.0)  # let the policy reach the node
                client.submit("n1", ["true"]).wait(timeout=30)  # warm-up
                times = []
                ids = []
                for _ in range(args.runs):
                    started = time.perf_counter()
                    task = client.submit("n1", ["true"])
                    result = task.wait(timeout=30)
                    times.append((time.perf_counter() - started) * 1000)
                    assert result.ok, result
                    ids.append(task.id)
                phases = _phases(env["CORTEX_DATABASE_URL"], set(ids))
            times.sort()
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            store = "postgresql" if (args.database_url or "").startswith("postgres") else "sqlite"
            print(
                f"{store}, load average {load_start:.2f} -> {os.getloadavg()[0]:.2f}; "
                f"submit -> result of `true`, {len(times)} runs: "
                f"p50 {statistics.median(times):.1f} ms, p99 {p99:.1f} ms, "
                f"min {times[0]:.1f} ms, max {times[-1]:.1f} ms"
            )
            print(
                "phases (median ms, from the journal's times): "
                + ", ".join(f"{name} {value:.1f}" for name, value in phases.items())
            )
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(30)
            hub.stop()
    return 0


def _phases(database_url: str, ids: set[str]) -> dict[str, float]:
    """Where a task's round trip went, from the journal's own times: created -> dispatched
    (the hub's wake-up and send), dispatched -> started (the node's spawn, as the hub
    recorded its report), started -> finished (the task and its result's way back)."""
    from sqlalchemy import create_engine, text

    marks = ("created_at", "dispatched_at", "started_at", "finished_at")
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = [r for r in conn.execute(text(f"SELECT id, {', '.join(marks)} FROM tasks"))]
    engine.dispose()
    spans: dict[str, list[float]] = {}
    for task_id, *times in rows:
        if task_id not in ids:
            continue
        at = [t.timestamp() if hasattr(t, "timestamp") else _parse(t) for t in times]
        for index in range(len(marks) - 1):
            name = f"{marks[index].removesuffix('_at')}->{marks[index + 1].removesuffix('_at')}"
            spans.setdefault(name, []).append((at[index + 1] - at[index]) * 1000)
    return {name: statistics.median(values) for name, values in spans.items()}


def _parse(value: str) -> float:
    from datetime import UTC, datetime

    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


if __name__ == "__main__":
    sys.exit(main())
