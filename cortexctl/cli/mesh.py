"""`cortexctl mesh`: the state of the whole mesh at a glance, once or live."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import JsonOpt, duration
from cortexctl.errors import UsageError

if TYPE_CHECKING:
    from cortexctl.core.status import MeshSnapshot
    from cortexctl.store.engine import Store

app = typer.Typer(
    help="See the whole mesh: nodes, hubs, tasks, uploads, maintenance jobs.", no_args_is_help=True
)


@app.command("status")
def status(
    ctx: typer.Context,
    jobs: Annotated[
        bool, typer.Option("--jobs", help="Also show each hub's maintenance jobs.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep a live view (Ctrl-C ends).")
    ] = False,
    watch_events: Annotated[
        bool,
        typer.Option(
            "--watch-events",
            help="Print one JSON line per change: node joined/left, policy "
            "changed, task finished (Ctrl-C ends).",
        ),
    ] = False,
    jsonl: Annotated[
        bool,
        typer.Option("--jsonl", help="With --watch-events: JSON lines (the only format it has)."),
    ] = False,
    interval: Annotated[str, typer.Option(metavar="DURATION", help="Refresh interval.")] = "1s",
    as_json: JsonOpt = False,
) -> None:
    """Show every node (online/stale/offline), its hub, sandbox, heartbeat age, running tasks
    and uploads, with a summary line.

    Example: cortexctl mesh status --follow
    """
    from cortexctl.core import status as core_status

    if follow and (as_json or watch_events):
        raise UsageError("--follow is a live view for people; use --watch-events for scripts")
    if jsonl and not watch_events:
        raise UsageError("--jsonl goes with --watch-events")
    interval_s = max(0.1, duration(interval, "--interval") or 1.0)
    obj = cli_context(ctx)
    store = obj.store()
    defaults = obj.sandbox_defaults

    def fetch() -> core_status.MeshSnapshot:
        with store.session() as session:
            return core_status.snapshot(session, defaults, with_jobs=jobs)

    if watch_events:
        watch(store, fetch, interval_s)
    elif follow:
        render.follow(fetch, interval_s, jobs)
    else:
        snap = fetch()
        render.emit(snap, as_json=as_json, human=lambda: render.print_mesh(snap, jobs))


def watch(store: Store, fetch: Callable[[], MeshSnapshot], interval_s: float) -> None:
    """Print change events as JSON lines until interrupted."""
    from cortexctl.core import clock
    from cortexctl.core import status as core_status

    previous = fetch()
    since = previous.taken_at
    # A first line says the watch is live, so a consumer knows later changes will show.
    render.print_jsonl(
        {
            "event": "watching",
            "ts": clock.iso(since),
            "nodes": len(previous.nodes),
            "hubs": previous.hubs,
        }
    )
    try:
        while True:
            time.sleep(interval_s)
            current = fetch()
            events = core_status.diff_events(previous, current)
            with store.session() as session:
                finished = core_status.finished_since(session, since)
            for task_id, node_id, state, at in finished:
                events.append(
                    {
                        "event": "task_finished",
                        "task_id": task_id,
                        "node_id": node_id,
                        "state": state,
                        "ts": clock.iso(at),
                    }
                )
                since = max(since, at)
            for event in events:
                event.setdefault("ts", clock.iso(current.taken_at))
                render.print_jsonl(event)
            previous = current
    except KeyboardInterrupt:
        pass
