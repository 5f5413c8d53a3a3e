"""`cortexctl mirrors`: what the hub holds of each node's files."""

from __future__ import annotations

from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import JsonOpt

app = typer.Typer(help="Look at the files nodes have synced to the hub.", no_args_is_help=True)


@app.command("ls")
def ls(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(metavar="NODE", help="Node id or name.")],
    as_json: JsonOpt = False,
) -> None:
    """List the files the hub holds for a node (path, size, modification time).

    Reads the mirror folder of the configured data dir; partial uploads are not shown.

    Example: cortexctl mirrors ls build-01 --json
    """
    from cortexctl.core import clock, mirrors

    obj = cli_context(ctx)
    with obj.store().session() as session:
        listing = mirrors.list_mirror(session, obj.settings.mirrors_dir, node)
    render.emit(
        listing,
        as_json=as_json,
        human=lambda: render.print_table(
            ["PATH", "SIZE", "MODIFIED"],
            [(f.path, f.size, clock.iso(f.mtime)) for f in listing.files],
            empty=f"no files in the mirror of {listing.node_name or listing.node_id}",
        ),
    )
