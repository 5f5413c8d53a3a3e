"""The one place that renders: tables for people, JSON for scripts, live views.

Only this module imports rich. JSON keys are the stable contract: field names of the core
views, timestamps in ISO 8601 UTC, states in lower case. Logs never go to stdout.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from cortexctl.core import clock


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_jsonable(getattr(value, field.name))
            for field in dataclasses.fields(value)
        }
    if isinstance(value, datetime):
        return clock.iso(value)
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False) + "\n")


def print_jsonl(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def age(value: datetime | None) -> str:
    from cortexctl.units import format_duration

    if value is None:
        return "-"
    return format_duration((clock.now() - value).total_seconds()) + " ago"


def build_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "") -> Any:
    from rich.table import Table

    table = Table(title=title or None, box=None, header_style="bold", pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
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


def spinner(text: str, enabled: bool) -> Any:
    """A spinner on a terminal; a no-op context when piped or quiet."""
    import contextlib

    if not enabled or not sys.stderr.isatty():
        return contextlib.nullcontext()
    return _console(stderr=True).status(text)
