"""`cortexctl admin-tokens`: credentials for the hub's admin API, each with a role."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.context import NotRemote, cli_context
from cortexctl.cli.options import DryRunOpt, duration

app = typer.Typer(
    help="Create, list and revoke admin API tokens (roles: viewer, operator, admin).",
    no_args_is_help=True,
)


class Role(StrEnum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"


@app.command("create")
def create(
    ctx: typer.Context,
    role: Annotated[Role, typer.Option(help="What the token may do (see the README's table).")],
    name: Annotated[
        str, typer.Option(metavar="NAME", help="Who or what holds it; the audit log's actor.")
    ],
    ttl: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="How long it is valid (e.g. 30d); default: 90d."),
    ] = "90d",
) -> None:
    """Create an admin token; it is printed once and only its hash is stored.

    Example: cortexctl admin-tokens create --role operator --name orchestrator --ttl 30d
    """
    ttl_s = duration(ttl, "--ttl")
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        v, token = remote.admin_tokens_create(name=name, role=role.value, ttl_s=ttl_s)
    else:
        from cortexctl.core import admin_tokens, audit

        with obj.store().session(write=True) as session:
            created = admin_tokens.create_admin_token(
                session, audit.local_actor(), name=name, role=role.value, ttl_s=ttl_s
            )
        v, token = created.admin_token, created.token
    result = {
        "id": v.id,
        "name": v.name,
        "role": v.role,
        "expires_at": v.expires_at,
        "token": token,
    }

    def human() -> None:
        render.message(
            f"admin token {v.id} ({v.name}, {v.role}, expires {render.iso(v.expires_at)})"
        )
        render.message(f"token: {token}")
        render.note("The token is shown only now; keep it secret (e.g. in a 0600 file).")

    render.emit(result, human=human)


@app.command("list")
def list_(
    ctx: typer.Context,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Include expired and revoked.")] = False,
) -> None:
    """List admin tokens (active ones unless --all); never their secrets.

    Example: cortexctl admin-tokens list --all
    """
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        views = remote.admin_tokens_list(include_inactive=all_)
    else:
        from cortexctl.core import admin_tokens

        with obj.store().session() as session:
            views = admin_tokens.list_admin_tokens(session, include_inactive=all_)
    render.emit(
        views,
        human=lambda: render.print_table(
            ["ID", "NAME", "ROLE", "STATE", "EXPIRES", "CREATED BY"],
            [
                (v.id, v.name, v.role, v.state, render.iso(v.expires_at), v.created_by)
                for v in views
            ],
            empty="no admin tokens",
        ),
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    refs: Annotated[
        list[str],
        typer.Argument(metavar="TOKEN...", help="Token ids, names or unique id prefixes."),
    ],
    dry_run: DryRunOpt = False,
) -> None:
    """Revoke admin tokens; the hub refuses them from the next call on.

    Example: cortexctl admin-tokens revoke orchestrator
    """
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        if dry_run:
            raise NotRemote(
                "`admin-tokens revoke --dry-run` is not available through a remote context "
                "yet; use `admin-tokens list` to see the tokens"
            )
        views = [remote.admin_tokens_revoke(ref) for ref in refs]  # one call each, in order
    else:
        from cortexctl.core import admin_tokens, audit

        actor = audit.local_actor()
        with obj.store().session(write=not dry_run) as session:
            views = [
                admin_tokens.revoke_admin_token(session, actor, ref, dry_run=dry_run)
                for ref in refs
            ]
    render.emit_revoked(views, dry_run, lambda v: f"admin token {v.id} ({v.name})")
