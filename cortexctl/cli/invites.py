"""`cortexctl invites`: tokens that let a node join, shown once."""

from __future__ import annotations

from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import JsonOpt, duration, parse_labels

app = typer.Typer(help="Create, list and revoke invites that let nodes join.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    ttl: Annotated[
        str, typer.Option(help="How long the invite is valid (30s, 10m, 12h, 7d).")
    ] = "1h",
    uses: Annotated[int, typer.Option(min=1, help="How many nodes may join with it.")] = 1,
    sandbox: Annotated[
        str | None,
        typer.Option(
            metavar="strict|permissive", help="Sandbox mode given to nodes that join with it."
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label", metavar="KEY=VALUE", help="Label given to nodes that join (repeatable)."
        ),
    ] = None,
    note: Annotated[str, typer.Option(help="A note for operators.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create an invite; its token is printed once and never stored.

    Example: cortexctl invites create --ttl 2h --uses 3 --label zone=eu
    """
    from cortexctl.core import invites

    ttl_s = duration(ttl, "--ttl")
    labels = parse_labels(label)
    obj = cli_context(ctx)
    with obj.store().session(write=True) as session:
        created = invites.create_invite(
            session,
            ttl_s=ttl_s or 0,
            uses=uses,
            labels=labels,
            sandbox=sandbox.lower() if sandbox else None,
            note=note,
        )
    result = {
        "id": created.invite.id,
        "token": created.token,
        "expires_at": created.invite.expires_at,
        "uses": created.invite.uses_allowed,
        "sandbox": created.invite.sandbox,
        "labels": created.invite.labels,
    }

    def human() -> None:
        render.message(
            f"invite {created.invite.id} (expires "
            f"{render.iso(created.invite.expires_at)}, "
            f"{created.invite.uses_allowed} use(s))"
        )
        render.message(f"token: {created.token}")
        render.note(
            "The token is shown only now; keep it secret. Join a node with:\n"
            f"  cortexctl agent --hub HOST:PORT --token {created.token} "
            "--workspace DIR"
        )

    render.emit(result, as_json=as_json, human=human)


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Include expired, used and revoked.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List invites (active ones unless --all).

    Example: cortexctl invites list --all
    """
    from cortexctl.core import invites

    with cli_context(ctx).store().session() as session:
        views = invites.list_invites(session, include_inactive=all_)
    render.emit(
        views,
        as_json=as_json,
        human=lambda: render.print_table(
            ["ID", "STATE", "USES", "EXPIRES", "SANDBOX", "LABELS"],
            [
                (
                    v.id,
                    v.state,
                    f"{v.uses_count}/{v.uses_allowed}",
                    render.iso(v.expires_at),
                    v.sandbox or "default",
                    ",".join(f"{k}={x}" for k, x in v.labels.items()),
                )
                for v in views
            ],
            empty="no invites",
        ),
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    invite_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Invite ids.")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke invites so no more nodes can join with them.

    Example: cortexctl invites revoke inv_0123456789ab
    """
    from cortexctl.core import invites

    with cli_context(ctx).store().session(write=True) as session:
        views = [invites.revoke_invite(session, invite_id) for invite_id in invite_ids]

    def human() -> None:
        for v in views:
            render.message(f"revoked invite {v.id}")

    render.emit(views, as_json=as_json, human=human)
