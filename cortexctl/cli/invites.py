"""`cortexctl invites`: tokens that let a node join, shown once."""

from __future__ import annotations

from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.context import NotRemote, cli_context
from cortexctl.cli.options import DryRunOpt, duration, parse_labels

app = typer.Typer(help="Create, list and revoke invites that let nodes join.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    ttl: Annotated[
        str, typer.Option(metavar="DURATION", help="How long the invite is valid (e.g. 1h, 7d).")
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
    note: Annotated[str, typer.Option(metavar="TEXT", help="A note for operators.")] = "",
    name: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="The name the joining node gets (one use); a node asking for another is refused.",
        ),
    ] = None,
    name_prefix: Annotated[
        str | None,
        typer.Option(
            metavar="PREFIX",
            help="Names of joining nodes start with this: a requested name must, and a "
            "node that asks for none is named PREFIX + its hostname.",
        ),
    ] = None,
) -> None:
    """Create an invite; its token is printed once and never stored.

    Names are the operator's: a node cannot take a name already in use (a revoked node's
    name stays taken until that node is deleted), and the invite's labels cannot be
    overridden by the node.

    Example: cortexctl invites create --ttl 2h --uses 3 --label zone=eu --name-prefix build-
    """
    from cortexctl.core.views import InviteCreated

    ttl_s = duration(ttl, "--ttl")
    labels = parse_labels(label)
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        result = remote.invites_create(
            ttl_ms=int((ttl_s or 0) * 1000),
            uses=uses,
            labels=labels,
            sandbox=sandbox.lower() if sandbox else "",
            note=note,
            name=name or "",
            name_prefix=name_prefix or "",
        )
    else:
        from cortexctl.core import audit, operations

        with obj.store(create=True).session(write=True) as session:
            created = operations.create_invite(
                session,
                audit.local_actor(),
                ttl_s=ttl_s or 0,
                uses=uses,
                labels=labels,
                sandbox=sandbox.lower() if sandbox else None,
                note=note,
                name=name,
                name_prefix=name_prefix,
            )
        result = InviteCreated(
            id=created.invite.id,
            token=created.token,
            expires_at=created.invite.expires_at,
            uses_allowed=created.invite.uses_allowed,
            sandbox=created.invite.sandbox,
            labels=created.invite.labels,
            name=created.invite.name,
            name_prefix=created.invite.name_prefix,
        )

    def human() -> None:
        render.message(
            f"invite {result.id} (expires {render.iso(result.expires_at)}, "
            f"{result.uses_allowed} use(s))"
        )
        render.message(f"token: {result.token}")
        # The token goes in a file (or the environment), never on a command line, where
        # `ps` and shell history would show it.
        render.note(
            "The token is shown only now; keep it secret. On the node, put it in a file "
            "readable only by the agent's user and join with:\n"
            "  (umask 077; cat > invite.token)     # paste the token, then Ctrl-D\n"
            "  cortexctl agent --hub HOST:PORT --token-file invite.token --workspace DIR\n"
            "(or set CORTEX_INVITE_TOKEN in the agent's environment)"
        )

    render.emit(result, human=human)


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Include expired, used and revoked.")
    ] = False,
) -> None:
    """List invites (active ones unless --all).

    Example: cortexctl invites list --all
    """
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        views = remote.invites_list(include_inactive=all_)
    else:
        from cortexctl.core import invites

        with obj.store().session() as session:
            views = invites.list_invites(session, include_inactive=all_)
    render.emit(
        views,
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
    invite_ids: Annotated[
        list[str], typer.Argument(metavar="ID...", help="Invite ids (a unique prefix will do).")
    ],
    dry_run: DryRunOpt = False,
) -> None:
    """Revoke invites so no more nodes can join with them.

    Example: cortexctl invites revoke inv_0123456789ab
    """
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        if dry_run:
            raise NotRemote(
                "`invites revoke --dry-run` is not available through a remote "
                "context yet; use `invites list --all` to see the invites"
            )
        views = [remote.invites_revoke(invite_id) for invite_id in invite_ids]
    else:
        from cortexctl.core import audit, operations

        actor = audit.local_actor()
        with obj.store().session(write=not dry_run) as session:
            views = [
                operations.revoke_invite(session, actor, ref, dry_run=dry_run) for ref in invite_ids
            ]
    render.emit_revoked(views, dry_run, lambda v: f"invite {v.id}")
