"""Shell completion: the scripts in completions/, `cortexctl completion`, store look-ups.

The scripts come from typer's completion classes, not click's: typer runs on its own copy
of click whose protocol differs (``_CORTEXCTL_COMPLETE=complete_bash``, where click says
``bash_complete``), so only typer's classes produce scripts the CLI can answer.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cortexctl.errors import UsageError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

PROG_NAME = "cortexctl"
COMPLETE_VAR = "_CORTEXCTL_COMPLETE"
SHELLS: dict[str, str] = {"bash": "cortexctl.bash", "zsh": "_cortexctl", "fish": "cortexctl.fish"}
MAX_SUGGESTIONS = 200


def enable_shell_completion() -> None:
    """Register typer's shell classes; the root app has no typer completion options to do it."""
    from typer._completion_classes import completion_init

    completion_init()


def completion_script(shell: str) -> str:
    """The completion script for ``shell``, generated from the CLI."""
    if shell not in SHELLS:
        raise UsageError(f"unknown shell {shell!r}: expected one of {', '.join(SHELLS)}")
    enable_shell_completion()
    from typer._click.shell_completion import get_completion_class
    from typer.main import get_command

    from cortexctl.cli.app import app

    complete_class = get_completion_class(shell)
    assert complete_class is not None, shell
    completer = complete_class(get_command(app), {}, PROG_NAME, COMPLETE_VAR)
    # What ShellComplete.source() returns; typer's bash class would also run bash to check
    # its version, which a generator must not depend on.
    script: str = completer.source_template % completer.source_vars()
    return script.strip() + "\n"


def complete_shell(incomplete: str) -> list[str]:
    return [shell for shell in SHELLS if shell.startswith(incomplete)]


def completion(
    shell: Annotated[
        str,
        typer.Argument(metavar="SHELL", help="bash, zsh or fish.", autocompletion=complete_shell),
    ],
) -> None:
    """Print the completion script for a shell (the same as the files in completions/).

    Example: cortexctl completion bash > ~/.local/share/bash-completion/completions/cortexctl
    """
    script = completion_script(shell)
    typer.echo(script, nl=False)


# --- suggestions from the store -----------------------------------------------------------


def complete_node(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Names of nodes not revoked (and their ids once one is being typed)."""
    return _suggest(ctx, incomplete, _node_suggestions)


def complete_task(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Task ids starting with what is typed, with their state and node."""
    return _suggest(ctx, incomplete, _task_suggestions)


def _suggest(
    ctx: typer.Context,
    incomplete: str,
    query: Callable[[Session, str], list[tuple[str, str]]],
) -> list[tuple[str, str]]:
    # Whatever goes wrong (no store, no schema, a bad config file), a shell must get no
    # suggestions rather than a traceback or a warning across the command line.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            store = _existing_store(ctx)
            if store is None:
                return []
            try:
                with store.session() as session:
                    return query(session, incomplete)[:MAX_SUGGESTIONS]
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


def _node_suggestions(session: Session, incomplete: str) -> list[tuple[str, str]]:
    from sqlalchemy import select

    from cortexctl.store.models import Node

    rows = session.execute(
        select(Node.name, Node.id)
        .where(Node.revoked_at.is_(None))
        .order_by(Node.name)
        .limit(MAX_SUGGESTIONS * 5)
    ).all()
    names = [(name, f"node {node_id}") for name, node_id in rows if name.startswith(incomplete)]
    ids = [(node_id, f"node {name}") for name, node_id in rows if node_id.startswith(incomplete)]
    # Ids only once one is being typed: an empty word lists the names people use.
    return names + (ids if incomplete else [])


def _task_suggestions(session: Session, incomplete: str) -> list[tuple[str, str]]:
    from sqlalchemy import select

    from cortexctl.store.models import Node, Task

    # A range scan of the primary key: cheap however long the journal is.
    rows = session.execute(
        select(Task.id, Task.state, Node.name)
        .join(Node, Node.id == Task.node_id)
        .where(Task.id >= incomplete)
        .order_by(Task.id)
        .limit(MAX_SUGGESTIONS)
    ).all()
    return [
        (task_id, f"{state} on {node_name}")
        for task_id, state, node_name in rows
        if task_id.startswith(incomplete)
    ]
