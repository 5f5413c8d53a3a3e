"""The one place that renders: tables for people, JSON/JSONL/YAML for scripts, live views.

Only this module imports rich. Every command hands its result to ``emit``, which renders
it by the one global output format (``-o table|wide|json|jsonl|yaml``, ``--json``) and
``--quiet``. Machine keys are the stable contract: field names of the typed views in
``core/views.py``, timestamps in ISO 8601 UTC, states in lower case. Logs never go to
stdout; with a machine format, errors are JSON on stderr.

Text a node controls (hostnames, labels, versions, task output and errors, file names)
is inert on the operator's terminal: every table cell, field and line passes through
``inert`` (control characters, ESC and bidi overrides shown escaped) and table cells are
rich ``Text``, so ``[bold]`` or ``[link=...]`` in them is shown, never interpreted.
"""

from __future__ import annotations

import contextlib
import enum
import json
import re
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cortexctl.core import clock

# C0 controls (ESC among them), DEL, C1 controls, and the bidi embeddings, overrides and
# isolates that can make a terminal show text in another order than it is.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def to_jsonable(value: Any) -> Any:
    """core.views.to_jsonable, imported when output is written (--help needs no views)."""
    from cortexctl.core.views import to_jsonable as convert

    return convert(value)


def inert(text: str, *, multiline: bool = False) -> str:
    """``text`` safe to print: unsafe characters shown as ``\\x1b``, ``\\u202e``...

    With ``multiline``, newlines and tabs stay (for task output and hints).
    """

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if multiline and char in "\n\t":
            return char
        code = ord(char)
        return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")

    return _UNSAFE.sub(escape, text)


def _cell(value: Any) -> Any:
    """A table cell: rich Text (never parsed as markup) of the inert text."""
    from rich.text import Text

    if isinstance(value, Text):
        return value
    return Text(inert("-" if value is None or value == "" else str(value)))


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    WIDE = "wide"
    JSON = "json"
    JSONL = "jsonl"
    YAML = "yaml"


MACHINE_FORMATS = (OutputFormat.JSON, OutputFormat.JSONL, OutputFormat.YAML)


@dataclass
class Output:
    """The output choices of this invocation, set once by the root before any command."""

    format: OutputFormat = OutputFormat.TABLE
    quiet: bool = False


OUTPUT = Output()


def configure(output_format: str | None, quiet: bool = False) -> None:
    from cortexctl.errors import InvalidArgument

    try:
        chosen = OutputFormat((output_format or "table").lower())
    except ValueError:
        raise InvalidArgument(
            f"bad --output {output_format!r}: expected one of "
            + ", ".join(f.value for f in OutputFormat)
        ) from None
    OUTPUT.format = chosen
    OUTPUT.quiet = quiet


def machine() -> bool:
    """Whether a machine format was chosen (so errors go to stderr as JSON)."""
    return OUTPUT.format in MACHINE_FORMATS


def wide() -> bool:
    return OUTPUT.format is OutputFormat.WIDE


def quiet() -> bool:
    return OUTPUT.quiet


def iso(value: datetime | None) -> str:
    return clock.iso(value) or "-"


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False) + "\n")


def print_jsonl(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_yaml(value: Any) -> None:
    sys.stdout.write(to_yaml(to_jsonable(value)))


def to_yaml(value: Any) -> str:
    """YAML for JSON-shaped data (dicts, lists, strings, numbers, booleans, null).

    Every string is double-quoted JSON, which is valid YAML, so no value can turn into
    another type (``no``, ``1e3``, ``2026-01-01``) on the way.
    """
    lines: list[str] = []
    _yaml_into(value, 0, lines)
    return "\n".join(lines) + "\n"


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(str(value), ensure_ascii=False)


def _yaml_into(value: Any, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            lines.append(pad + "{}")
        for key, item in value.items():
            name = _yaml_key(str(key))
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{name}:")
                _yaml_into(item, indent + 2, lines)
            else:
                lines.append(f"{pad}{name}: {_yaml_inline(item)}")
    elif isinstance(value, list):
        if not value:
            lines.append(pad + "[]")
        for item in value:
            if isinstance(item, dict | list) and item:
                nested: list[str] = []
                _yaml_into(item, indent + 2, nested)
                first = nested[0]
                lines.append(f"{pad}- {first[indent + 2 :]}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_yaml_inline(item)}")
    else:
        lines.append(pad + _yaml_scalar(value))


_YAML_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def _yaml_key(key: str) -> str:
    if _YAML_PLAIN_KEY.match(key) and key.lower() not in _YAML_WORDS:
        return key
    return json.dumps(key, ensure_ascii=False)


def _yaml_inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _yaml_scalar(value)


def print_machine(value: Any, output_format: OutputFormat) -> None:
    if output_format is OutputFormat.JSONL:
        data = to_jsonable(value)
        for item in data if isinstance(data, list) else [data]:
            print_jsonl(item)
    elif output_format is OutputFormat.YAML:
        print_yaml(value)
    else:
        print_json(value)


def print_error(message_text: str, code: int) -> None:
    """An error on stderr: one line for people, one JSON object with a machine format."""
    from cortexctl.errors import exit_name

    if machine():
        error_view = {"error": {"code": exit_name(code), "exit": code, "message": message_text}}
        sys.stderr.write(json.dumps(error_view, ensure_ascii=False) + "\n")
    else:
        sys.stderr.write(f"error: {message_text}\n")


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


def limits_text(limits: dict[str, int]) -> str:
    """A task's rlimits for people: ``cpu 1h, memory 8GiB, ...``; 0 is the agent's own."""
    from cortexctl.units import format_duration

    def size(value: int) -> str:
        for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
            if value >= factor:
                return f"{value / factor:g}{unit}"
        return str(value)

    shown: list[tuple[str, str, Callable[[int], str]]] = [
        ("cpu", "cpu_seconds", format_duration),
        ("address space", "address_space_bytes", size),
        ("processes", "processes", str),
        ("file size", "file_size_bytes", size),
        ("open files", "open_files", str),
    ]
    return ", ".join(
        f"{label} {fmt(limits[key]) if limits.get(key) else 'agent default'}"
        for label, key, fmt in shown
    )


# Columns whose cells get copied into the next command or read at a glance: never cut.
WHOLE_COLUMNS = frozenset({"ID", "NAME", "STATUS", "STATE", "KEY", "NODE", "TASK"})


def build_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    title: str = "",
    width: int | None = None,
    *,
    whole: bool = False,
) -> Any:
    """A table for people. When it is wider than ``width``, the other columns are cut to
    fit, widest first, each ending in an ellipsis ("…"); ids, names and states stay whole.

    With ``whole`` the table keeps the width of its columns (as cut to ``width``, if any)
    whatever the console's: rich cuts nothing more (print it with ``crop=False``)."""
    from rich.cells import cell_len
    from rich.table import Table

    cells = [
        [inert("-" if cell is None or cell == "" else str(cell)) for cell in row] for row in rows
    ]
    natural = [
        max([cell_len(column), *(cell_len(row[i]) for row in cells)])
        for i, column in enumerate(columns)
    ]
    limits = _fit(natural, [c in WHOLE_COLUMNS for c in columns], width)
    table = Table(
        title=title or None,
        box=None,
        header_style="bold",
        pad_edge=False,
        width=sum(limits) + 2 * (len(limits) - 1) if whole else None,
    )
    for index, column in enumerate(columns):
        table.add_column(
            column,
            no_wrap=True,
            overflow="ellipsis",
            min_width=limits[index],
            max_width=limits[index],
        )
    for row in cells:
        table.add_row(*(_cell(cell) for cell in row))
    return table


def _fit(natural: list[int], whole: list[bool], width: int | None) -> list[int]:
    """Column widths within ``width`` (2 spaces between columns): whole columns keep their
    width, the others give way from the widest down, to no less than 5 characters."""
    widths = list(natural)
    if width is None:
        return widths
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    while excess > 0:
        shrinkable = [i for i, w in enumerate(widths) if not whole[i] and w > 5]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        others = [widths[i] for i in shrinkable if i != widest]
        target = max(5, max(others, default=5), widths[widest] - excess)
        if target >= widths[widest]:
            target = widths[widest] - 1
        excess -= widths[widest] - target
        widths[widest] = target
    return widths


def print_table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "nothing to show"
) -> None:
    if OUTPUT.quiet:
        return
    rows = list(rows)
    if not rows:
        message(empty)
        return
    console = _console()
    # -o wide never cuts; a table whose whole columns alone are wider than the terminal
    # runs past it (the terminal wraps) rather than losing its last columns.
    width = None if wide() else console.width
    console.print(build_table(columns, rows, width=width, whole=True), crop=False)


def dry_run_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """What a --dry-run would change, then a note that nothing did."""
    print_table(columns, rows, empty="nothing would change")
    note("dry run: nothing changed")


def emit_revoked(views: Sequence[Any], dry_run: bool, label: Callable[[Any], str]) -> None:
    """`invites revoke`, `admin-tokens revoke`: each view (as it is, or would be, with
    ``dry_run``) with a ``dry_run`` key; for people, one line each naming ``label(view)``."""

    def human() -> None:
        for v in views:
            message(f"{'would revoke' if dry_run else 'revoked'} {label(v)}")
        if dry_run:
            note("dry run: nothing changed")

    emit([to_jsonable(v) | {"dry_run": dry_run} for v in views], human=human)


def names(items: Sequence[str], limit: int = 5) -> str:
    """A short list for a question or a summary: "a, b, c and 4 more"."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def print_fields(pairs: Sequence[tuple[str, Any]], *, multiline: Collection[str] = ()) -> None:
    """``key: value`` lines; values of the keys in ``multiline`` may span lines."""
    if OUTPUT.quiet:
        return
    width = max(len(key) for key, _ in pairs)
    for key, value in pairs:
        shown = "-" if value is None or value == "" else value
        if isinstance(shown, datetime):
            shown = f"{clock.iso(shown)} ({age(shown)})"
        text = inert(str(shown), multiline=key in multiline)
        sys.stdout.write(f"{key + ':':<{width + 1}} {text}\n")


def mirror_usage(usage: Any) -> str:
    from cortexctl.units import format_size

    return f"{format_size(usage.used_bytes)} in {usage.used_files} file(s)"


def mirror_quota(usage: Any) -> str:
    from cortexctl.units import format_size

    shown = (
        format_size(usage.quota_bytes) if usage.quota_bytes else "no byte limit",
        f"{usage.quota_files} files" if usage.quota_files else "no file limit",
    )
    return ", ".join(shown) + ("" if usage.quota_configured else " (hub default)")


def task_output(text: str, stream: Any) -> None:
    """A task's own output: as it is when piped (it is data), inert on a terminal."""
    stream.write(inert(text, multiline=True) if stream.isatty() else text)
    stream.flush()


def message(text: str) -> None:
    """A human sentence for stdout (never with a machine format; nothing with --quiet)."""
    if OUTPUT.quiet:
        return
    sys.stdout.write(inert(text, multiline=True) + "\n")


def note(text: str) -> None:
    """A side remark for stderr, so it never mixes into data on stdout (none if --quiet)."""
    if OUTPUT.quiet:
        return
    sys.stderr.write(inert(text, multiline=True) + "\n")


def error(text: str) -> None:
    sys.stderr.write(f"error: {inert(text, multiline=True)}\n")


def is_interactive() -> bool:
    """A person at a terminal, who can answer a question."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def ask(question: str) -> bool:
    """A yes/no question on the terminal; no (the default) unless answered y or yes."""
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def confirm(question: str, *, yes: bool) -> None:
    """Go on only if --yes was given or a person says yes; refuse off a terminal.

    The hook every destructive command calls (nodes revoke|delete, rotate-credential,
    sandbox changes on a selector, mirrors rm).
    """
    from cortexctl.errors import CortexError, InvalidArgument

    if yes:
        return
    if not is_interactive():
        raise InvalidArgument(f"{question.rstrip('?')}: not on a terminal; add --yes to confirm")
    if not ask(question):
        raise CortexError("aborted; nothing changed")


def warning(text: str) -> None:
    """A warning for stderr: the command still succeeds."""
    sys.stderr.write(f"warning: {text}\n")


def emit(value: Any, *, human: Callable[[], None], as_json: bool = False) -> None:
    """Print a command's result by the chosen output format; nothing with ``--quiet``.

    ``value`` is a typed view (or a list of them) from ``core/views.py``: its fields are
    the machine keys. ``human`` prints it for people (``table`` and ``wide``).
    ``as_json`` is for a command's own ``--json`` (kept for commands that declare one).
    """
    if OUTPUT.quiet:
        return
    chosen = OUTPUT.format
    if as_json and chosen not in MACHINE_FORMATS:
        chosen = OutputFormat.JSON
    if chosen in MACHINE_FORMATS:
        print_machine(value, chosen)
    else:
        human()


@contextlib.contextmanager
def progress(description: str, total: int | None, enabled: bool) -> Iterator[Callable[[str], None]]:
    """A progress bar on a terminal; yields a function to call once per item done."""
    if not enabled or machine() or OUTPUT.quiet or not sys.stderr.isatty():
        yield lambda _item: None
        return
    from rich.progress import Progress

    with Progress(console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda _item: bar.advance(task)


@contextlib.contextmanager
def status(text: str, enabled: bool) -> Iterator[Callable[[str], None]]:
    """A spinner with a changing line on a terminal; yields the function that changes it."""
    if not enabled or not sys.stderr.isatty():
        yield lambda _text: None
        return
    with _console(stderr=True).status(text) as live:
        yield lambda line: live.update(line)


def spinner(text: str, enabled: bool) -> Any:
    """A spinner on a terminal; a no-op context when piped or quiet."""
    if not enabled or machine() or OUTPUT.quiet or not sys.stderr.isatty():
        return contextlib.nullcontext()
    return _console(stderr=True).status(text)


# --- mesh status ---------------------------------------------------------------------------

NODE_COLUMNS = ["NAME", "ID", "STATUS", "HUB", "SANDBOX", "HEARTBEAT", "TASKS", "UPLOADS"]
STATUS_STYLE = {"online": "green", "stale": "yellow", "offline": "dim", "revoked": "red"}


def _node_rows(snap: Any, styled: bool) -> list[list[Any]]:
    from rich.text import Text

    rows = []
    for node in snap.nodes:
        status: Any = node.status
        if styled and status in STATUS_STYLE:
            status = Text(status, style=STATUS_STYLE[status])
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
    from cortexctl.core.views import SUMMARY_LEGACY_KEYS

    # A hub one release older (remote context) sends only the old names.
    s = {new: snap.summary.get(old, 0) for old, new in SUMMARY_LEGACY_KEYS.items()}
    s |= snap.summary
    return (
        f"{s['node_count']} node(s): {s['online_count']} online, {s['stale_count']} stale, "
        f"{s['offline_count']} offline, {s['revoked_count']} revoked · {s['hub_count']} hub(s) · "
        f"tasks {s['running_tasks']} running, {s['pending_tasks']} pending · "
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
        table.add_row(*(_cell(cell) for cell in row))
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
