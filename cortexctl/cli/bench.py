"""`cortexctl bench`: how fast is a hub on this machine."""

from __future__ import annotations

from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.options import JsonOpt, duration
from cortexctl.errors import UsageError


def bench(
    ctx: typer.Context,
    node_count: Annotated[
        int, typer.Option("--nodes", min=1, max=5000, help="Simulated nodes.")
    ] = 50,
    length: Annotated[
        str, typer.Option("--duration", metavar="DURATION", help="How long the nodes heartbeat.")
    ] = "10s",
    interval: Annotated[
        str, typer.Option(metavar="DURATION", help="Heartbeat interval of the nodes.")
    ] = "1s",
    task_count: Annotated[
        int, typer.Option("--tasks", min=0, help="Tasks submitted through the store.")
    ] = 200,
    hub: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="Measure this running hub (with --database-url of its "
            "store) instead of a throwaway local one.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure handshakes/s, heartbeat ack latency and task round trips with simulated nodes.

    By default it starts a throwaway hub on a temporary SQLite store; nothing of yours is
    touched. Figures vary between runs on shared machines: compare ratios from one run.

    Example: cortexctl bench --nodes 200 --duration 20s --json
    """
    from cortexctl.benchmark import run_bench
    from cortexctl.cli.context import cli_context

    duration_s = duration(length, "--duration") or 0.0
    interval_s = duration(interval, "--interval") or 1.0
    if duration_s <= 0 or interval_s <= 0:
        raise UsageError("--duration and --interval must be positive, e.g. 10s and 1s")
    database_url = None
    if hub is not None:
        database_url = cli_context(ctx).settings.database_url
    with render.spinner(f"benchmarking with {node_count} simulated nodes", not as_json):
        result = run_bench(
            node_count=node_count,
            duration_s=duration_s,
            interval_s=interval_s,
            task_count=task_count,
            address=hub,
            database_url=database_url,
        )

    def human() -> None:
        render.print_fields(
            [
                ("nodes", result.nodes),
                (
                    "handshakes/s",
                    f"{result.handshakes_per_s}  ({result.handshake_retries} "
                    "UNAVAILABLE answers retried with backoff)",
                ),
                (
                    "first ack ms",
                    "p50 {p50}  p99 {p99}  max {max}".format(**result.first_heartbeat_ack_ms)
                    + "  (includes stream set-up)",
                ),
                (
                    "heartbeat ack ms",
                    "p50 {p50}  p99 {p99}  max {max}".format(**result.heartbeat_ack_ms)
                    + f"  ({result.heartbeats_acked} acks)",
                ),
                (
                    "task round trip ms",
                    "p50 {p50}  p99 {p99}  max {max}".format(**result.task_round_trip_ms)
                    + f"  ({result.tasks} tasks)",
                ),
                ("tasks/s", result.tasks_per_s),
                ("hub RSS MiB", result.hub_rss_mib),
            ]
        )
        for note in result.notes:
            render.note(note)

    render.emit(result, as_json=as_json, human=human)
