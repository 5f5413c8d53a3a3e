"""`cortexctl journal`: repair the task journal by hand or from cron."""

from __future__ import annotations

from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.completion import complete_node
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import DryRunOpt

app = typer.Typer(help="Repair the task journal.", no_args_is_help=True)


@app.command("fail")
def fail(
    ctx: typer.Context,
    node: Annotated[
        str,
        typer.Argument(metavar="NODE", help="Node id or name.", autocompletion=complete_node),
    ],
    reason: Annotated[
        str, typer.Option(metavar="TEXT", help="Diagnostic recorded on each task.")
    ] = "failed by an operator (journal fail)",
    dry_run: DryRunOpt = False,
) -> None:
    """FAIL every unfinished task of a node; a hub holding its stream cancels them there.

    Idempotent: a second run finds nothing and exits 0.

    Example: cortexctl journal fail build-01 --reason 'node reimaged'
    """
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        result = remote.journal_fail(node, reason, dry_run)
    else:
        from cortexctl.core import audit, operations

        with obj.store().session(write=not dry_run) as session:
            result = operations.fail_node_tasks(
                session, audit.local_actor(), node, reason, dry_run=dry_run
            )
    render.emit(
        result,
        human=lambda: render.message(
            f"{'would fail' if dry_run else 'failed'} {result.failed_tasks} task(s) of node "
            f"{result.node_name}"
        ),
    )
