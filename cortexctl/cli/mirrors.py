"""`cortexctl mirrors`: what the hub holds of each node's files."""

from __future__ import annotations

from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.completion import complete_node
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import DryRunOpt, YesOpt

app = typer.Typer(
    help="Look at and remove the files nodes have synced to the hub.", no_args_is_help=True
)


@app.command("ls")
def ls(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(metavar="NODE", help="Node id or name.")],
) -> None:
    """List the files the hubs hold for a node (path, size, time, the hub holding it).

    Reads the store's file records, so the list is complete from any host: with several
    hubs, HUB says whose disk holds each file (a hub that is down is marked so). Partial
    uploads are not shown.

    Example: cortexctl mirrors ls build-01 --json
    """
    from cortexctl.core import clock
    from cortexctl.core.views import MirrorFile

    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        listing = remote.mirrors_ls(node)
    else:
        from cortexctl.core import mirrors

        with obj.store().session() as session:
            listing = mirrors.list_mirror(session, obj.settings.mirrors_dir, node)

    def hub(f: MirrorFile) -> str:
        return f.hub_id if f.hub_state == "live" else f"{f.hub_id} ({f.hub_state})"

    render.emit(
        listing,
        human=lambda: render.print_table(
            ["PATH", "SIZE", "MODIFIED", "HUB"],
            [(f.path, f.size, clock.iso(f.mtime), hub(f)) for f in listing.files],
            empty=f"no files in the mirror of {listing.node_name or listing.node_id}",
        ),
    )


@app.command("rm")
def rm(
    ctx: typer.Context,
    node: Annotated[
        str, typer.Argument(metavar="NODE", help="Node id or name.", autocompletion=complete_node)
    ],
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[PATH]...",
            help="Files or folders relative to the node's mirror (default: all of it).",
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
) -> None:
    """Delete a node's whole mirror, or the given files and folders of it.

    Asks first on a terminal; --yes answers for scripts.

    Paths are confined to the node's mirror (no absolute paths, no '..', no symlink
    walked through); the node's quota usage goes down by what was removed. Works on a
    full disk: the hub's free-space reserve keeps room for the store.

    Example: cortexctl mirrors rm build-01 logs/old.tar --dry-run
    """
    from cortexctl.core.views import MirrorRemoval
    from cortexctl.units import format_size

    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:

        def run(dry: bool) -> MirrorRemoval:
            return remote.mirrors_rm(node, paths or [], dry)

    else:
        from cortexctl.core import audit, mirrors, operations

        def run(dry: bool) -> MirrorRemoval:
            return operations.mirrors_rm(
                obj.store(),
                audit.local_actor(),
                mirrors_dir=obj.settings.mirrors_dir,
                ref=node,
                paths=paths or [],
                dry_run=dry,
                local_hubs=mirrors.local_hub_ids(obj.settings.data_dir),
            )

    if not dry_run:
        planned = run(True)
        if planned.items:
            what = ", ".join(item.path or "the whole mirror" for item in planned.items)
            render.confirm(
                f"remove {what} ({planned.files_removed} file(s), "
                f"{format_size(planned.bytes_removed)}) "
                f"from the mirror of {planned.node_name or planned.node_id}?",
                yes=yes,
            )
    removal = run(dry_run)
    who = removal.node_name or removal.node_id

    def human() -> None:
        verb = "would remove" if dry_run else "removed"
        if not removal.items and not removal.held_elsewhere:
            render.message(f"the mirror of {who} is empty; nothing to remove")
            return
        for item in removal.items:
            render.message(
                f"{verb} {item.path or '(whole mirror)'}: {item.files_removed} file(s), "
                f"{format_size(item.bytes_removed)}"
            )
        render.message(
            f"{verb} {removal.files_removed} file(s), {format_size(removal.bytes_removed)} "
            f"from the mirror of {who}"
        )
        for hub_id, count in sorted(removal.held_elsewhere.items()):
            render.note(
                f"hub {hub_id} holds {count} more file(s) of {who} on its own disk: "
                "run `cortexctl mirrors rm` on its host"
            )

    render.emit(removal, human=human)
