"""`cortexctl db`: the store's schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.context import cli_context

app = typer.Typer(
    help="Create and upgrade the store's schema; back up a SQLite store.", no_args_is_help=True
)


@app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Create or upgrade the schema to the newest revision (safe to repeat).

    Example: cortexctl --database-url postgresql+psycopg://cortex@db/cortex db upgrade
    """
    from cortexctl.core.views import SchemaView
    from cortexctl.store import engine

    store = cli_context(ctx).store(check_schema=False, create=True)
    with render.spinner("upgrading the store", True):
        before, after = engine.upgrade(store)
    render.emit(
        SchemaView(before=before, current=after, store_url=store.display_url),
        human=lambda: render.message(
            f"store {store.display_url}: schema {after}"
            + (" (already current)" if before == after else f" (upgraded from {before or 'empty'})")
        ),
    )


@app.command("current")
def current(ctx: typer.Context) -> None:
    """Print the store's schema revision and the newest one this cortexctl knows.

    Example: cortexctl db current --json
    """
    from cortexctl.store import engine

    store = cli_context(ctx).store(check_schema=False)
    revision = engine.current_revision(store)
    head = engine.SCHEMA_HEAD
    from cortexctl.core.views import SchemaView

    render.emit(
        SchemaView(
            current=revision, head=head, up_to_date=revision == head, store_url=store.display_url
        ),
        human=lambda: render.message(
            f"store {store.display_url}: schema {revision or 'empty'}"
            + (
                " (current)"
                if revision == head
                else f" (newest is {head}; run `cortexctl db upgrade`)"
            )
        ),
    )


@app.command("backup")
def backup(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Where to write the copy.")],
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
) -> None:
    """Copy a SQLite store to FILE while the hub runs (SQLite's online backup).

    For a PostgreSQL store it prints how to use pg_dump instead and exits 2.

    Example: cortexctl db backup /var/backups/cortex-$(date +%F).db
    """
    from cortexctl.core.backup import backup_store

    obj = cli_context(ctx)
    obj.store()  # a missing store is "no store at PATH", never an empty copy
    result = backup_store(obj.settings.database_url, file, force=force)
    render.emit(
        result,
        human=lambda: render.message(
            f"backed up {result.store_path} to {result.path} ({result.size_bytes} bytes)"
        ),
    )
