"""`cortexctl config`: where the config file is, what is in effect, and changing it."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.context import cli_context
from cortexctl.errors import Conflict

app = typer.Typer(
    help="Show the effective settings and edit the config file.", no_args_is_help=True
)


def complete_key(incomplete: str) -> list[tuple[str, str]]:
    from cortexctl.config import SETTINGS

    return [(s.key, s.help) for s in SETTINGS if s.key.startswith(incomplete)]


KeyArg = Annotated[
    str,
    typer.Argument(
        metavar="KEY",
        help="Setting as section.name, e.g. hub.listen.",
        autocompletion=complete_key,
    ),
]


@app.command("path")
def path(ctx: typer.Context) -> None:
    """Print your config file (the one `set` writes, maybe not yet there) and every file
    read: yours, then the system file /etc/cortexctl/config.toml, merged below it key by key.

    The path goes to stdout and the search order to stderr, so $(cortexctl config path) works.

    Example: cortexctl config path
    """
    from cortexctl.config import config_search_path, config_target_file

    explicit = cli_context(ctx).config_path
    target = config_target_file(explicit, os.environ)
    searched = config_search_path(explicit, os.environ)
    result = {
        "path": str(target),
        "exists": target.is_file(),
        "search_order": [{"path": str(p), "exists": p.is_file()} for p in searched],
    }

    def human() -> None:
        render.message(str(target))
        if explicit:
            render.note("chosen by --config or CORTEX_CONFIG, instead of your own file")
        render.note(
            "files read, each above the next, merged key by key (flags and CORTEX_* "
            "variables above them all):"
        )
        for number, candidate in enumerate(searched, 1):
            state = "exists" if candidate.is_file() else "missing"
            render.note(f"  {number}. {candidate} ({state})")
        if not target.is_file():
            render.note("it does not exist yet: `cortexctl config init` or `config set` create it")

    render.emit(result, human=human)


@app.command("show")
def show(ctx: typer.Context) -> None:
    """Print every setting's value and where it came from, and which store is in use and why.

    Each value names its layer: flag, env VAR, file PATH (your file or the system file
    /etc/cortexctl/config.toml, merged below yours key by key) or default. In JSON (a list
    of settings), durations are seconds and sizes are bytes; `cortexctl --version -o json`
    carries the store choice as an object.

    Example: cortexctl config show --json | jq '.[] | select(.source != "default")'
    """
    from cortexctl.config import describe_settings, display_value

    settings = cli_context(ctx).settings
    views = describe_settings(settings)

    def human() -> None:
        render.print_table(
            ["KEY", "VALUE", "SOURCE"],
            [
                (
                    v.key,
                    display_value(v.key, v.value),
                    f"{v.source} {v.origin}".strip(),
                )
                for v in views
            ],
        )
        choice = settings.store_choice()
        state = "" if choice.exists is not False else " (does not exist yet)"
        render.note(f"store: {choice.path or choice.url}{state} — {choice.reason}")
        render.note(f"config file: {settings.config_file or 'none'}")
        render.note(f"system config file: {settings.system_config_file or 'none'}")

    render.emit(views, human=human)


@app.command("get")
def get(ctx: typer.Context, key: KeyArg) -> None:
    """Print the effective value of one setting.

    Example: cortexctl config get hub.heartbeat_interval
    """
    from cortexctl.config import describe_settings, display_value, lookup_setting

    lookup_setting(key)  # an unknown key is "not found" even when the file is broken
    (view,) = describe_settings(cli_context(ctx).settings, [key])
    render.emit(view, human=lambda: render.message(display_value(key, view.value)))


@app.command("set")
def set_(
    ctx: typer.Context,
    key: KeyArg,
    value: Annotated[
        str,
        typer.Argument(
            metavar="VALUE", help="New value, e.g. 10s, 64KiB, strict, or ls,cat for lists."
        ),
    ],
) -> None:
    """Write one setting to the config file, keeping its comments and order.

    The file (and its section) is created if missing; a new file is readable by you only.

    Example: cortexctl config set hub.heartbeat_interval 10s
    """
    from cortexctl.config import (
        config_target_file,
        display_value,
        lookup_setting,
        redacted,
        write_setting,
    )

    obj = cli_context(ctx)
    target = config_target_file(obj.config_path, os.environ)
    written = redacted(key, write_setting(target, key, value))
    setting = lookup_setting(key)
    shown = display_value(key, setting.parse(written))
    from cortexctl.core.views import ConfigWritten

    render.emit(
        ConfigWritten(key=key, value=written, path=str(target)),
        human=lambda: render.message(f"{key} = {shown} in {target}"),
    )
    if obj.flags.get(key) is not None:
        render.note(f"note: a command-line flag overrides {key} in this command")
    elif os.environ.get(setting.env_var):
        render.note(f"note: {setting.env_var} is set and overrides the file")


@app.command("init")
def init(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented template of every setting, with its help and default.

    Refuses to replace an existing file unless --force is given (exit 5).

    Example: cortexctl --config /etc/cortexctl/config.toml config init
    """
    from cortexctl.config import config_target_file, config_template, write_config_file

    target = config_target_file(cli_context(ctx).config_path, os.environ)
    if target.exists() and not force:
        raise Conflict(
            f"config file {target} exists; give --force to replace it, "
            "or change one setting with `cortexctl config set KEY VALUE`"
        )
    write_config_file(target, config_template())
    from cortexctl.core.views import PathView

    render.emit(
        PathView(path=str(target)),
        human=lambda: render.message(f"wrote {target}"),
    )
