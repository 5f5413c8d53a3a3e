"""`cortexctl gc`: remove what is left over, safely from cron while a hub runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from cortexctl.cli import render
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import DryRunOpt, JsonOpt, QuietOpt, duration

app = typer.Typer(
    help="Remove stale upload leases, old mirrors, spent invites and old tasks.",
    no_args_is_help=True,
)


def _report(
    task: str,
    result: dict[str, Any],
    *,
    as_json: bool,
    quiet: bool,
    human: Callable[[], None],
) -> None:
    if result.get("skipped"):
        if as_json:
            render.print_json(result)
        elif not quiet:
            render.note(f"another run of gc {task} is in progress; nothing done")
        return
    if quiet:
        return
    render.emit(result, as_json=as_json, human=human)


def _would(dry_run: bool, verb: str = "removed") -> str:
    return "would remove" if dry_run else verb


@app.command("locks")
def locks(
    ctx: typer.Context,
    ttl: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Idle time after which a lease nobody holds is removed [default: sync.lock_ttl].",
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Remove upload leases left idle by ended uploads or dead hubs, and their temp files.

    A live upload is never touched: its hub renews its lease while it runs.

    Example: cortexctl gc locks --ttl 10m --dry-run
    """
    from cortexctl.core import maintenance

    ttl_s = duration(ttl, "--ttl")
    obj = cli_context(ctx)
    settings = obj.settings
    result = maintenance.run_gc_locks(
        obj.store(),
        ttl_s=settings["sync.lock_ttl"] if ttl_s is None else ttl_s,
        mirrors_dir=settings.mirrors_dir,
        dry_run=dry_run,
    )

    def human() -> None:
        expired = result["expired"]
        if not expired:
            render.message("no expired upload leases")
            return
        render.message(
            f"{_would(dry_run)} {len(expired)} expired lease(s) and "
            f"{len(result['removed_files'])} temp file(s)"
        )
        render.print_table(
            ["NODE", "PATH", "HUB", "IDLE", "BYTES"],
            [
                (
                    lease.node_id,
                    lease.path,
                    lease.hub_id,
                    f"{lease.idle_s:.0f}s",
                    lease.bytes_received,
                )
                for lease in expired
            ],
        )

    _report("locks", result, as_json=as_json, quiet=quiet, human=human)


@app.command("mirrors")
def mirrors(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Remove mirrors of nodes not seen for this long [default: sync.mirror_retention].",
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Remove mirrors of revoked, unknown and long-unseen nodes, orphaned partial uploads
    and empty folders.

    Example: cortexctl gc mirrors --older-than 30d --dry-run
    """
    from cortexctl.core import maintenance

    retention_s = duration(older_than, "--older-than")
    obj = cli_context(ctx)
    settings = obj.settings
    with render.spinner("sweeping mirrors", not (as_json or quiet)):
        result = maintenance.run_gc_mirrors(
            obj.store(),
            mirrors_dir=settings.mirrors_dir,
            retention_s=settings["sync.mirror_retention"] if retention_s is None else retention_s,
            dry_run=dry_run,
        )

    def human() -> None:
        if not (result["removed_files"] or result["empty_dirs"] or result["nodes"]):
            render.message("nothing to remove from the mirrors")
            return
        render.message(
            f"{_would(dry_run)} {result['removed_files']} file(s), "
            f"{result['removed_bytes']} bytes, {result['empty_dirs']} empty folder(s)"
        )
        render.print_table(
            ["NODE", "REASON", "FILES", "BYTES"],
            [(n["node_id"], n["reason"], n["files"], n["bytes"]) for n in result["nodes"]],
            empty="no whole mirror removed",
        )

    _report("mirrors", result, as_json=as_json, quiet=quiet, human=human)


@app.command("invites")
def invites(
    ctx: typer.Context,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Remove invites expired, used up or revoked longer ago than jobs.invite_retention.

    Example: cortexctl gc invites --dry-run --json
    """
    from cortexctl.core import maintenance

    obj = cli_context(ctx)
    result = maintenance.run_gc_invites(
        obj.store(), retention_s=obj.settings["jobs.invite_retention"], dry_run=dry_run
    )
    _report(
        "invites",
        result,
        as_json=as_json,
        quiet=quiet,
        human=lambda: render.message(
            f"{_would(dry_run)} {result['count']} invite(s)"
            if result["count"]
            else "no invites to remove"
        ),
    )


@app.command("tasks")
def tasks(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(metavar="DURATION", help="Remove finished tasks older than this (e.g. 30d)."),
    ],
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Remove finished tasks from the journal once older than --older-than.

    Example: cortexctl gc tasks --older-than 30d
    """
    from cortexctl.core import maintenance

    older_than_s = duration(older_than, "--older-than")
    assert older_than_s is not None
    result = maintenance.run_gc_tasks(
        cli_context(ctx).store(), older_than_s=older_than_s, dry_run=dry_run
    )
    _report(
        "tasks",
        result,
        as_json=as_json,
        quiet=quiet,
        human=lambda: render.message(
            f"{_would(dry_run)} {result['count']} task(s)"
            if result["count"]
            else "no tasks to remove"
        ),
    )
