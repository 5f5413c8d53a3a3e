"""`cortexctl journal`: repair the task journal by hand or from cron."""

from __future__ import annotations

from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.completion import complete_node
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import JsonOpt, QuietOpt

app = typer.Typer(help="Repair the task journal.", no_args_is_help=True)


@app.command("fail")
def fail(
    ctx: typer.Context,
    node: Annotated[
        str,
        typer.Argument(metavar="NODE", help="Node id or name.", autocompletion=complete_node),
    ],
    reason: Annotated[
        str, typer.Option(help="Diagnostic recorded on each task.")
    ] = "failed by an operator (journal fail)",
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """FAIL every unfinished task of a node; a hub holding its stream cancels them there.

    Idempotent: a second run finds nothing and exits 0.

    Example: cortexctl journal fail build-01 --reason 'node reimaged'
    """
    from cortexctl.core import journal, nodes

    with cli_context(ctx).store().session(write=True) as session:
        target = nodes.resolve_node(session, node)
        failed = journal.fail_node_tasks(
            session, target.id, f"{reason} (node {target.name} ({target.id}))"
        )
    if quiet:
        return
    render.emit(
        {"node_id": target.id, "failed": failed},
        as_json=as_json,
        human=lambda: render.message(f"failed {failed} task(s) of node {target.name}"),
    )
