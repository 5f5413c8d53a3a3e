"""The one place that renders: tables for people, JSON for scripts, live views.

Only this module imports rich. JSON keys are the stable contract: field names of the core
views, timestamps in ISO 8601 UTC, states in lower case. Logs never go to stdout.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from cortexctl.core import clock
from cortexctl.core.views import to_jsonable


def iso(value: datetime | None) -> str:
    return clock.iso(value) or "-"


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False) + "\n")


def print_jsonl(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output is for grep and awk: wide enough that rows never wrap.
    width = None if stream.isatty() else 250
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def age(value: datetime | None) -> str:
    from cortexctl.units import format_duration

    if value is None:
        return "-"
    return format_duration((clock.now() - value).total_seconds()) + " ago"


def build_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "") -> Any:
    from rich.table import Table

    table = Table(title=title or None, box=None, header_style="bold", pad_edge=False)
    last = len(columns) - 1
    for index, column in enumerate(columns):
        # Ids and names never wrap (they get copied into the next command); the last column
        # folds when the terminal is narrow.
        table.add_column(column, no_wrap=index < last, overflow="fold")
    for row in rows:
        table.add_row(*("-" if cell is None or cell == "" else str(cell) for cell in row))
    return table


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "nothing to show"
) -> None:
    rows = list(rows)
    if not rows:
        message(empty)
        return
    _console().print(build_table(columns, rows))


def print_fields(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(key) for key, _ in pairs)
    for key, value in pairs:
        shown = "-" if value is None or value == "" else value
        if isinstance(shown, datetime):
            shown = f"{clock.iso(shown)} ({age(shown)})"
        sys.stdout.write(f"{key + ':':<{width + 1}} {shown}\n")


def message(text: str) -> None:
    """A human sentence for stdout (never used with --json)."""
    sys.stdout.write(text + "\n")


def note(text: str) -> None:
    """A side remark for stderr, so it never mixes into data on stdout."""
    sys.stderr.write(text + "\n")


def error(text: str) -> None:
    sys.stderr.write(f"error: {text}\n")


def emit(value: Any, *, as_json: bool, human: Callable[[], None]) -> None:
    """Print ``value`` as JSON, or call ``human`` to print it for people."""
    if as_json:
        print_json(value)
    else:
        human()


@contextlib.contextmanager
def progress(description: str, total: int | None, enabled: bool) -> Iterator[Callable[[str], None]]:
    """A progress bar on a terminal; yields a function to call once per item done."""
    if not enabled or not sys.stderr.isatty():
        yield lambda _item: None
        return
    from rich.progress import Progress

    with Progress(console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda _item: bar.advance(task)


def spinner(text: str, enabled: bool) -> Any:
    """A spinner on a terminal; a no-op context when piped or quiet."""
    if not enabled or not sys.stderr.isatty():
        return contextlib.nullcontext()
    return _console(stderr=True).status(text)


# --- mesh status ---------------------------------------------------------------------------

NODE_COLUMNS = ["NAME", "ID", "STATUS", "HUB", "SANDBOX", "HEARTBEAT", "TASKS", "UPLOADS"]
STATUS_STYLE = {"online": "green", "stale": "yellow", "offline": "dim", "revoked": "red"}


def _node_rows(snap: Any, styled: bool) -> list[list[str]]:
    rows = []
    for node in snap.nodes:
        status = node.status
        if styled and status in STATUS_STYLE:
            status = f"[{STATUS_STYLE[status]}]{status}[/]"
        rows.append(
            [
                node.name,
                node.id,
                status,
                node.hub_id or "-",
                node.sandbox,
                age(node.last_heartbeat),
                str(node.running_tasks),
                str(node.uploads_in_flight),
            ]
        )
    return rows


def summary_line(snap: Any) -> str:
    s = snap.summary
    return (
        f"{s['nodes']} node(s): {s['online']} online, {s['stale']} stale, "
        f"{s['offline']} offline, {s['revoked']} revoked · {s['hubs']} hub(s) · "
        f"tasks {s['tasks_running']} running, {s['tasks_pending']} pending · "
        f"{s['uploads_in_flight']} upload(s) in flight"
    )


def job_rows(jobs: Any) -> list[list[str]]:
    from cortexctl.units import format_duration

    return [
        [
            job.hub_id,
            job.job,
            format_duration(job.interval_s),
            job.last_outcome,
            age(job.last_started_at),
            "-" if job.last_duration_s is None else format_duration(job.last_duration_s),
            "-" if job.next_run_at is None else clock.iso(job.next_run_at) or "-",
            f"{job.runs}/{job.failures}",
            job.last_error[:60],
        ]
        for job in jobs
    ]


JOB_COLUMNS = ["HUB", "JOB", "EVERY", "LAST", "RAN", "TOOK", "NEXT", "RUNS/FAILED", "ERROR"]


def mesh_renderable(snap: Any, show_jobs: bool) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    # On a narrow terminal the hub id gives way first; a node's name and id never do.
    longest = max((len(node.name) for node in snap.nodes), default=4)
    for column in NODE_COLUMNS:
        keep = {"NAME": longest, "ID": 15, "STATUS": 7, "SANDBOX": 10}.get(column)
        table.add_column(column, no_wrap=True, min_width=keep)
    for row in _node_rows(snap, styled=True):
        table.add_row(*row)
    parts: list[Any] = [table, Text(summary_line(snap), style="bold")]
    if show_jobs:
        parts.append(build_table(JOB_COLUMNS, job_rows(snap.jobs)))
    return Group(*parts)


def print_mesh(snap: Any, show_jobs: bool) -> None:
    if not snap.nodes:
        message("no nodes yet; create an invite with `cortexctl invites create`")
    else:
        print_table(NODE_COLUMNS, _node_rows(snap, styled=False))
    message(summary_line(snap))
    if show_jobs:
        print_table(JOB_COLUMNS, job_rows(snap.jobs), empty="no maintenance job has run yet")


def follow(fetch: Callable[[], Any], interval_s: float, show_jobs: bool) -> None:
    """Refresh a live view until Ctrl-C; on a pipe, print a plain snapshot each interval."""
    import time

    try:
        if sys.stdout.isatty():
            from rich.live import Live

            with Live(
                mesh_renderable(fetch(), show_jobs),
                console=_console(),
                auto_refresh=False,
                screen=False,
            ) as live:
                while True:
                    time.sleep(interval_s)
                    live.update(mesh_renderable(fetch(), show_jobs), refresh=True)
        else:
            while True:
                snap = fetch()
                message(f"--- {clock.iso(snap.taken_at)}")
                print_mesh(snap, show_jobs)
                sys.stdout.flush()
                time.sleep(interval_s)
    except KeyboardInterrupt:
        pass
