"""`cortexctl audit`: who changed what, from where, and when."""

from __future__ import annotations

from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import duration

app = typer.Typer(
    help="Read the audit log of operator changes and node joins.", no_args_is_help=True
)


@app.command("list")
def list_(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="Only entries of the last DURATION (e.g. 1h, 7d)."),
    ] = None,
    actor: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Only this actor (OS user, admin token or node name)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, the newest.")] = 200,
) -> None:
    """List audit entries, oldest first.

    Example: cortexctl audit list --since 1d --actor orchestrator --json
    """
    from datetime import timedelta

    from cortexctl.core import clock

    since_s = duration(since, "--since")
    after = None if since_s is None else clock.now() - timedelta(seconds=since_s)
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        views = remote.audit_list(since=after, actor=actor, limit=limit)
    else:
        from cortexctl.core import audit

        with obj.store().session() as session:
            views = audit.list_audit(session, since=after, actor=actor, limit=limit)
    render.emit(
        views,
        human=lambda: render.print_table(
            ["TIME", "ACTOR", "FROM", "ACTION", "TARGET", "OUTCOME"],
            [
                (
                    render.iso(v.at),
                    f"{v.actor_kind}:{v.actor}",
                    v.source,
                    v.action,
                    v.target,
                    v.outcome,
                )
                for v in views
            ],
            empty="no audit entries",
        ),
    )
