"""`cortexctl mesh`: the state of the whole mesh at a glance, once or live."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cortexctl.cli import render
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import duration
from cortexctl.errors import InvalidArgument

if TYPE_CHECKING:
    from cortexctl.cli.context import CliContext
    from cortexctl.core.health import CheckThresholds
    from cortexctl.core.sandbox import SandboxDefaults
    from cortexctl.core.views import HealthCheck, MeshSnapshot
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
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Monitoring check: one summary line, exit 0 ok, 1 warning, 2 critical "
            "(also: no store), 3 unknown (the store cannot be read).",
        ),
    ] = False,
    warn_offline: Annotated[
        int,
        typer.Option(metavar="N", min=0, help="--check: warn at N offline/stale nodes (0 off)."),
    ] = 1,
    crit_offline: Annotated[
        int, typer.Option(metavar="N", min=0, help="--check: critical at N offline/stale (0 off).")
    ] = 0,
    warn_failed_jobs: Annotated[
        int, typer.Option(metavar="N", min=0, help="--check: warn at N failing jobs (0 off).")
    ] = 1,
    crit_failed_jobs: Annotated[
        int, typer.Option(metavar="N", min=0, help="--check: critical at N failing jobs (0 off).")
    ] = 0,
    crit_dead_hubs: Annotated[
        int, typer.Option(metavar="N", min=0, help="--check: critical at N dead hubs (0 off).")
    ] = 1,
    min_hubs: Annotated[
        int, typer.Option(metavar="N", min=0, help="--check: critical below N live hubs.")
    ] = 1,
) -> None:
    """Show every node (online/stale/offline), its hub, sandbox, heartbeat age, running tasks
    and uploads, with a summary line.

    --check is for monitoring (nagios, cron): it prints one line and exits 0 ok, 1 warning,
    2 critical (also when there is no store), 3 unknown (the store cannot be read); the one
    exception to the exit-code table besides `tasks ... --wait`.

    Example: cortexctl mesh status --follow
    Example: cortexctl mesh status --check --crit-offline 3
    """
    if check:
        from cortexctl.core import health

        if follow or watch_events:
            raise InvalidArgument("--check prints one line; it does not go with --follow")
        thresholds = health.CheckThresholds(
            warn_offline=warn_offline or None,
            crit_offline=crit_offline or None,
            warn_failed_jobs=warn_failed_jobs or None,
            crit_failed_jobs=crit_failed_jobs or None,
            crit_dead_hubs=crit_dead_hubs or None,
            min_hubs=min_hubs,
        )
        obj = cli_context(ctx)
        if (remote := obj.remote()) is not None:
            snap = remote.mesh_status(with_jobs=True)
            dead = [
                hub.id for hub in remote.hubs_list(include_stopped=False) if hub.state == "dead"
            ]
            result = health.judge(snap, dead, thresholds)
        else:
            result = _check_store(obj, thresholds)
        render.emit(result, human=lambda: render.message(result.line))
        raise typer.Exit(result.exit_code)

    if follow and (render.machine() or watch_events):
        raise InvalidArgument("--follow is a live view for people; use --watch-events for scripts")
    if jsonl and not watch_events:
        raise InvalidArgument("--jsonl goes with --watch-events")
    interval_s = max(0.1, duration(interval, "--interval") or 1.0)
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:

        def fetch() -> MeshSnapshot:
            return remote.mesh_status(with_jobs=jobs)

        def events() -> Iterator[Any]:
            return remote.mesh_events(interval_s)

    else:
        from cortexctl.core import status as core_status

        store = obj.store()
        defaults = obj.sandbox_defaults

        def fetch() -> MeshSnapshot:
            with store.session() as session:
                return core_status.snapshot(session, defaults, with_jobs=jobs)

        def events() -> Iterator[Any]:
            return store_events(store, defaults, interval_s)

    if watch_events:
        watch(events())
    elif follow:
        render.follow(fetch, interval_s, jobs)
    else:
        snap = fetch()
        render.emit(snap, human=lambda: render.print_mesh(snap, jobs))


def store_events(store: Store, defaults: SandboxDefaults, interval_s: float) -> Iterator[Any]:
    """``core.status`` events: "watching", then each change, looking every ``interval_s``."""
    from cortexctl.core import status as core_status

    with store.session() as session:
        first, cursor = core_status.start_events(session, defaults)
    yield first
    while True:
        time.sleep(interval_s)
        with store.session() as session:
            found, cursor = core_status.events_since(session, cursor, defaults)
        yield from found


def watch(events: Iterator[Any]) -> None:
    """Print events as JSON lines until interrupted (or the hub goes: its error)."""
    try:
        for event in events:
            render.print_jsonl(event)
    except KeyboardInterrupt:
        pass


def _check_store(obj: CliContext, thresholds: CheckThresholds) -> HealthCheck:
    """`--check` judged from the store; no store, or one that cannot be read, is still a
    status line (CRITICAL, UNKNOWN)."""
    from cortexctl.core import health
    from cortexctl.core import status as core_status
    from cortexctl.errors import StoreMissing, Unavailable
    from cortexctl.store.engine import store_error

    try:
        with obj.store().session() as session:
            return core_status.health_check(session, obj.sandbox_defaults, thresholds)
    except Exception as err:
        mapped = err if isinstance(err, Unavailable) else store_error(err, obj.store_url)
        if not isinstance(mapped, Unavailable):
            raise
        return health.check_without_store(str(mapped), missing=isinstance(mapped, StoreMissing))
