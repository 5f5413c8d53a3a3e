"""Shell completion: the scripts in completions/, `cortexctl completion`, and suggestions
(from `core.suggest`).

The scripts come from typer's completion classes, not click's: typer runs on its own copy
of click whose protocol differs (``_CORTEXCTL_COMPLETE=complete_bash``, where click says
``bash_complete``), so only typer's classes produce scripts the CLI can answer.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from cortexctl.errors import InvalidArgument

PROG_NAME = "cortexctl"
COMPLETE_VAR = "_CORTEXCTL_COMPLETE"
SHELLS: dict[str, str] = {"bash": "cortexctl.bash", "zsh": "_cortexctl", "fish": "cortexctl.fish"}
MAX_SUGGESTIONS = 200


def enable_shell_completion() -> None:
    """Register typer's shell classes; the root app has no typer completion options to do it."""
    from typer._completion_classes import completion_init

    completion_init()


def completion_script(shell: str, root: Any) -> str:
    """The completion script for ``shell``, generated from the CLI's root command (passed
    in, so this module needs no import of the app that imports it)."""
    if shell not in SHELLS:
        raise InvalidArgument(f"unknown shell {shell!r}: expected one of {', '.join(SHELLS)}")
    enable_shell_completion()
    from typer._click.shell_completion import get_completion_class

    complete_class = get_completion_class(shell)
    assert complete_class is not None, shell
    completer = complete_class(root, {}, PROG_NAME, COMPLETE_VAR)
    # What ShellComplete.source() returns; typer's bash class would also run bash to check
    # its version, which a generator must not depend on.
    script: str = completer.source_template % completer.source_vars()
    return script.strip() + "\n"


def complete_shell(incomplete: str) -> list[str]:
    return [shell for shell in SHELLS if shell.startswith(incomplete)]


def completion(
    ctx: typer.Context,
    shell: Annotated[
        str,
        typer.Argument(metavar="SHELL", help="bash, zsh or fish.", autocompletion=complete_shell),
    ],
) -> None:
    """Print the completion script for a shell (the same as the files in completions/).

    Example: cortexctl completion bash > ~/.local/share/bash-completion/completions/cortexctl
    """
    script = completion_script(shell, ctx.find_root().command)
    typer.echo(script, nl=False)


# --- suggestions from the store -----------------------------------------------------------


def complete_node(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Names of nodes not revoked (and their ids once one is being typed)."""
    return _suggest(ctx, incomplete, "nodes")


def complete_task(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Task ids starting with what is typed, with their state and node."""
    return _suggest(ctx, incomplete, "tasks")


def _suggest(
    ctx: typer.Context, incomplete: str, what: Literal["nodes", "tasks"]
) -> list[tuple[str, str]]:
    # Whatever goes wrong (no store, no schema, a bad config file), a shell must get no
    # suggestions rather than a traceback or a warning across the command line.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            store = _existing_store(ctx)
            if store is None:
                return []
            from cortexctl.core import suggest

            query = suggest.node_refs if what == "nodes" else suggest.task_ids
            try:
                with store.session() as session:
                    return query(session, incomplete, MAX_SUGGESTIONS)
            finally:
                store.dispose()
    except Exception:  # noqa: BLE001 - see above
        return []


def _existing_store(ctx: typer.Context) -> Any:
    """The store named by the command line, env and config; None when there is none yet."""
    from cortexctl.config import load_settings

    params = ctx.find_root().params
    settings = load_settings(
        {
            "store.data_dir": params.get("data_dir"),
            "store.database_url": params.get("database_url"),
        },
        params.get("config"),
    )
    url = settings.database_url
    # Never create a store (or its directory) just to complete a word; and with no store
    # yet, answer before paying for importing SQLAlchemy.
    if url.startswith("sqlite"):
        database = _sqlite_file(url)
        if database is None or not database.is_file():
            return None
    from cortexctl.store.engine import Store

    return Store(url, pool_size=1)


def _sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None when in memory), read without SQLAlchemy."""
    _scheme, separator, rest = url.partition(":///")
    database = rest.split("?", 1)[0]
    if not separator or database in ("", ":memory:"):
        return None
    return Path(database).expanduser()
