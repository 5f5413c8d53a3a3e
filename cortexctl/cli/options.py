"""Options shared by many commands, declared once."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cortexctl.errors import InvalidArgument

# --json, -o/--output and -q/--quiet are global options (cli/app.py), accepted before or
# after any command: a command declares none of them and hands its result to render.emit,
# which honours them. These aliases remain for a command that still declares its own;
# the root moves the flags to the front, so such a parameter simply stays False.
JsonOpt = Annotated[bool, typer.Option("--json", hidden=True)]
QuietOpt = Annotated[bool, typer.Option("--quiet", hidden=True)]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
]
YesOpt = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Do it without asking (needed when not on a terminal)."),
]
SelectorOpt = Annotated[
    str | None,
    typer.Option(
        "--selector",
        "-l",
        metavar="KEY=VALUE[,...]",
        help="Only nodes whose labels match: key=value, key!=value, key, !key; comma = and.",
    ),
]

SelfReportedOpt = Annotated[
    bool,
    typer.Option(
        "--self-reported",
        help="Let -l match labels nodes gave themselves (`agent --label`) too; by default "
        "only the invite's and operators' labels count.",
    ),
]


def selector(text: str | None) -> Any:
    """The parsed -l selector (a core Selector), or None."""
    if text is None:
        return None
    from cortexctl.core.selectors import parse_selector

    return parse_selector(text)


def env_help(text: str, variable: str) -> str:
    """Help text naming the environment variable once, the same way on every option."""
    return f"{text} [env: {variable}]"


def parse_labels(values: list[str] | None) -> dict[str, str]:
    """``key=value`` pairs from repeated --label options."""
    labels: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidArgument(f"bad label {item!r}: expected KEY=VALUE, e.g. --label zone=eu")
        labels[key.strip()] = value.strip()
    return labels


def duration(text: str | None, what: str) -> float | None:
    from cortexctl.units import parse_duration

    return None if text is None else parse_duration(text, what=what)
