"""`cortexctl db`: the store's schema."""

from __future__ import annotations

import typer

from cortexctl.cli import render
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import JsonOpt, QuietOpt

app = typer.Typer(help="Create and upgrade the store's schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(ctx: typer.Context, as_json: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Create or upgrade the schema to the newest revision (safe to repeat).

    Example: cortexctl --database-url postgresql+psycopg://cortex@db/cortex db upgrade
    """
    from cortexctl.store import engine

    store = cli_context(ctx).store(check_schema=False)
    with render.spinner("upgrading the store", not (as_json or quiet)):
        before, after = engine.upgrade(store)
    if quiet:
        return
    render.emit(
        {"before": before, "current": after, "store": store.display_url},
        as_json=as_json,
        human=lambda: render.message(
            f"store {store.display_url}: schema {after}"
            + (" (already current)" if before == after else f" (upgraded from {before or 'empty'})")
        ),
    )


@app.command("current")
def current(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Print the store's schema revision and the newest one this cortexctl knows.

    Example: cortexctl db current --json
    """
    from cortexctl.store import engine

    store = cli_context(ctx).store(check_schema=False)
    revision = engine.current_revision(store)
    head = engine.SCHEMA_HEAD
    render.emit(
        {
            "current": revision,
            "head": head,
            "up_to_date": revision == head,
            "store": store.display_url,
        },
        as_json=as_json,
        human=lambda: render.message(
            f"store {store.display_url}: schema {revision or 'empty'}"
            + (
                " (current)"
                if revision == head
                else f" (newest is {head}; run `cortexctl db upgrade`)"
            )
        ),
    )
