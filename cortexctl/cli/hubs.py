"""`cortexctl hubs`: the hub processes that are members of this store."""

from __future__ import annotations

from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.context import cli_context

app = typer.Typer(help="List the hubs that serve this store.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Include hubs that stopped or were recovered.")
    ] = False,
) -> None:
    """List the member hubs: address, start, lease (on the store's clock), nodes, epoch.

    A hub is live while its lease holds; dead once it lapsed (a live hub then fails its
    in-flight tasks and marks it stopped).

    Example: cortexctl hubs list -o json
    """
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        views = remote.hubs_list(include_stopped=all_)
    else:
        from cortexctl.core import hubs

        with obj.store().session() as session:
            views = hubs.list_hubs(session, include_stopped=all_)
    render.emit(
        views,
        human=lambda: render.print_table(
            [
                "ID",
                "STATE",
                "ADDRESS",
                "HOST",
                "PID",
                "STARTED",
                "LEASE",
                "NODES",
                "VERSION",
                "EPOCH",
            ],
            [
                (
                    v.id,
                    v.state,
                    v.address,
                    v.hostname,
                    v.pid,
                    render.iso(v.started_at),
                    f"{v.lease_remaining_s:.0f}s left"
                    if v.state == "live"
                    else f"lapsed {render.iso(v.lease_expires_at)}",
                    v.nodes_connected,
                    v.version,
                    v.epoch,
                )
                for v in views
            ],
            empty="no hubs",
        ),
    )
