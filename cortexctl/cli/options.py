"""Options shared by many commands, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

from cortexctl.errors import UsageError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (stable keys) for scripts.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
]


def parse_labels(values: list[str] | None) -> dict[str, str]:
    """``key=value`` pairs from repeated --label options."""
    labels: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"bad label {item!r}: expected KEY=VALUE, e.g. --label zone=eu")
        labels[key.strip()] = value.strip()
    return labels


def duration(text: str | None, what: str) -> float | None:
    from cortexctl.units import parse_duration

    return None if text is None else parse_duration(text, what=what)
