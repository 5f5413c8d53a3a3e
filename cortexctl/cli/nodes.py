"""`cortexctl nodes`: the mesh's nodes, their sandbox policy, revocation."""

from __future__ import annotations

from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.completion import complete_node
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import JsonOpt
from cortexctl.errors import UsageError

app = typer.Typer(
    help="List and inspect nodes, set their sandbox, revoke them.", no_args_is_help=True
)

NodeArg = Annotated[
    str, typer.Argument(metavar="NODE", help="Node id or name.", autocompletion=complete_node)
]


@app.command("list")
def list_(
    ctx: typer.Context,
    active: Annotated[bool, typer.Option("--active", help="Leave out revoked nodes.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List nodes with their status and sandbox mode.

    Example: cortexctl nodes list --json | jq '.[] | select(.online)'
    """
    from cortexctl.core import nodes

    obj = cli_context(ctx)
    with obj.store().session() as session:
        views = nodes.list_nodes(session, obj.sandbox_defaults, include_revoked=not active)
    render.emit(
        views,
        as_json=as_json,
        human=lambda: render.print_table(
            ["NAME", "ID", "STATUS", "SANDBOX", "HOSTNAME", "LAST HEARTBEAT"],
            [
                (
                    v.name,
                    v.id,
                    v.status,
                    v.sandbox + ("" if v.sandbox_configured else " (default)"),
                    v.hostname,
                    render.age(v.last_heartbeat),
                )
                for v in views
            ],
            empty="no nodes yet; create an invite with `cortexctl invites create`",
        ),
    )


@app.command("show")
def show(ctx: typer.Context, node: NodeArg, as_json: JsonOpt = False) -> None:
    """Show one node in detail.

    Example: cortexctl nodes show build-01
    """
    from cortexctl.core import nodes

    obj = cli_context(ctx)
    with obj.store().session() as session:
        v = nodes.show_node(session, node, obj.sandbox_defaults)
    render.emit(
        v,
        as_json=as_json,
        human=lambda: render.print_fields(
            [
                ("name", v.name),
                ("id", v.id),
                ("status", v.status),
                ("hostname", v.hostname),
                ("sandbox", v.sandbox + ("" if v.sandbox_configured else " (hub default)")),
                ("allowed commands", ", ".join(v.allowed_commands)),
                ("policy revision", v.policy_revision),
                ("hub", v.hub_id),
                ("last heartbeat", v.last_heartbeat),
                ("running tasks", v.running_tasks),
                ("labels", ", ".join(f"{k}={x}" for k, x in v.labels.items())),
                ("agent version", v.agent_version),
                ("joined", v.created_at),
            ]
        ),
    )


@app.command("sandbox")
def sandbox(
    ctx: typer.Context,
    node_refs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[NODE]...", help="Node ids or names.", autocompletion=complete_node
        ),
    ] = None,
    all_nodes: Annotated[
        bool, typer.Option("--all", help="Every node that is not revoked.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Only allow-listed commands, no shell.")
    ] = False,
    permissive: Annotated[
        bool, typer.Option("--permissive", help="Allow bash scripts too.")
    ] = False,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow", metavar="CMD", help="Allowed command (repeatable; replaces the list)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set the sandbox mode of nodes; connected nodes get it within two seconds.

    Example: cortexctl nodes sandbox build-01 --strict --allow python3 --allow git
    """
    from cortexctl.core import nodes

    if strict == permissive:
        raise UsageError("choose exactly one of --strict or --permissive")
    if bool(node_refs) == all_nodes:
        raise UsageError("name the nodes to change, or give --all (not both)")
    obj = cli_context(ctx)
    mode = "strict" if strict else "permissive"
    with obj.store().session(write=True) as session:
        changes = nodes.set_sandbox(
            session,
            node_refs or [],
            all_nodes=all_nodes,
            mode=mode,
            allowed_commands=allow,
            defaults=obj.sandbox_defaults,
        )
    render.emit(
        changes,
        as_json=as_json,
        human=lambda: render.print_table(
            ["NAME", "ID", "SANDBOX", "ALLOWED", "REVISION"],
            [
                (c.name, c.node_id, c.sandbox, ", ".join(c.allowed_commands), c.revision)
                for c in changes
            ],
            empty="no nodes to change",
        ),
    )


@app.command("revoke")
def revoke(ctx: typer.Context, node: NodeArg, as_json: JsonOpt = False) -> None:
    """Revoke a node: its credential stops working, its stream ends, its tasks fail.

    Example: cortexctl nodes revoke build-01
    """
    from cortexctl.core import nodes

    with cli_context(ctx).store().session(write=True) as session:
        revoked, failed = nodes.revoke_node(session, node)
    result = {"id": revoked.id, "name": revoked.name, "revoked": True, "failed_tasks": failed}
    render.emit(
        result,
        as_json=as_json,
        human=lambda: render.message(
            f"revoked node {revoked.name} ({revoked.id}); failed {failed} unfinished task(s)"
        ),
    )


@app.command("rotate-credential")
def rotate_credential(ctx: typer.Context, node: NodeArg, as_json: JsonOpt = False) -> None:
    """Give a node a new credential, printed once; the old one stops working at once.

    Put the new credential in the node's credential.json (field node_credential) and
    restart its agent.

    Example: cortexctl nodes rotate-credential build-01 --json
    """
    from cortexctl.core import nodes

    with cli_context(ctx).store().session(write=True) as session:
        rotated = nodes.rotate_credential(session, node)
    result = {
        "id": rotated.node.id,
        "name": rotated.node.name,
        "node_credential": rotated.credential,
    }

    def human() -> None:
        render.message(f"new credential for node {rotated.node.name} ({rotated.node.id}):")
        render.message(rotated.credential)
        render.note(
            "It is shown only now. The node's live stream ends; store the credential "
            "in its credential.json (node_credential) and restart its agent."
        )

    render.emit(result, as_json=as_json, human=human)
