"""`cortexctl gc`: remove what is left over, safely from cron while a hub runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from cortexctl.cli import render
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import DryRunOpt, duration

app = typer.Typer(
    help="Remove stale upload leases, old mirrors, spent invites and old tasks.",
    no_args_is_help=True,
)


def _report(task: str, result: dict[str, Any], *, human: Callable[[], None]) -> None:
    """Every gc command prints the same view (core/views.GcReport)."""
    from cortexctl.core.views import gc_report

    report = gc_report(task, result)
    if report.skipped:
        human = lambda: render.note(  # noqa: E731
            f"another run of gc {task} is in progress; nothing done"
        )
    render.emit(report, human=human)


def _run(
    ctx: typer.Context,
    kind: str,
    dry_run: bool,
    older_than_s: float | None = None,
) -> Any:
    """One audited `gc KIND` run: the core call the admin API's RunGc makes too (through a
    remote context, that hub's run, on its host)."""
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        return remote.gc(kind, dry_run, older_than_s)
    from cortexctl.core import audit, mirrors, operations

    host_state: dict[str, Any] = {}
    if kind == "mirrors":  # this host's hubs: their live uploads are never swept
        host_state["local_hubs"] = mirrors.local_hub_ids(obj.settings.data_dir)
    return operations.run_gc(
        obj.store(),
        audit.local_actor(),
        kind,
        dry_run=dry_run,
        older_than_s=older_than_s,
        **operations.gc_thresholds(obj.settings),
        **host_state,
    )


def _would(dry_run: bool, verb: str = "removed") -> str:
    return "would remove" if dry_run else verb


def _counted(result: dict[str, Any], dry_run: bool, things: str, nothing: str) -> str:
    return f"{_would(dry_run)} {result['count']} {things}" if result["count"] else nothing


def _report_count(
    task: str, result: dict[str, Any], dry_run: bool, things: str, nothing: str
) -> None:
    """The report of a gc that removes rows and counts them (invites, audit)."""
    _report(task, result, human=lambda: render.message(_counted(result, dry_run, things, nothing)))


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
) -> None:
    """Remove upload leases left idle by ended uploads or dead hubs, and their temp files.

    A live upload is never touched: its hub renews its lease while it runs.

    Example: cortexctl gc locks --ttl 10m --dry-run
    """
    result = _run(ctx, "locks", dry_run, duration(ttl, "--ttl"))

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

    _report("locks", result, human=human)


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
) -> None:
    """Remove mirrors of revoked, unknown and long-unseen nodes, orphaned partial uploads
    and empty folders.

    Example: cortexctl gc mirrors --older-than 30d --dry-run
    """
    retention_s = duration(older_than, "--older-than")
    with render.spinner("sweeping mirrors", True):
        result = _run(ctx, "mirrors", dry_run, retention_s)

    def human() -> None:
        records = result.get("records") or {}
        for hub_id, count in sorted((records.get("on_hubs_down") or {}).items()):
            render.note(
                f"hub {hub_id} is down and holds {count} file(s) on its own disk: its records "
                "stay until `gc mirrors` runs on its host (or the hub is forgotten)"
            )
        if records.get("added") or records.get("removed") or records.get("forgotten_hubs"):
            added, removed = ("would add", "would remove") if dry_run else ("added", "removed")
            render.message(
                f"file records: {added} {records.get('added', 0)} for files found on this "
                f"host's disk; {removed} {records.get('removed', 0)} of files gone from it "
                f"and {sum((records.get('forgotten_hubs') or {}).values())} of hubs the "
                "store no longer knows"
            )
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

    _report("mirrors", result, human=human)


@app.command("invites")
def invites(
    ctx: typer.Context,
    dry_run: DryRunOpt = False,
) -> None:
    """Remove invites expired, used up or revoked longer ago than jobs.invite_retention.

    Example: cortexctl gc invites --dry-run --json
    """
    result = _run(ctx, "invites", dry_run)
    _report_count("invites", result, dry_run, "invite(s)", "no invites to remove")


@app.command("audit")
def audit(
    ctx: typer.Context,
    dry_run: DryRunOpt = False,
) -> None:
    """Remove audit entries older than jobs.audit_retention (the only way one leaves).

    Example: cortexctl gc audit --dry-run
    """
    result = _run(ctx, "audit", dry_run)
    _report_count("audit", result, dry_run, "audit entr(ies)", "no audit entries to remove")


@app.command("tasks")
def tasks(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(metavar="DURATION", help="Remove finished tasks older than this (e.g. 30d)."),
    ],
    dry_run: DryRunOpt = False,
) -> None:
    """Remove finished tasks from the journal once older than --older-than.

    Queued tasks past their expiry (--expire-after) end EXPIRED first, as the hub's
    task_expiry job does.

    Example: cortexctl gc tasks --older-than 30d
    """
    result = _run(ctx, "tasks", dry_run, duration(older_than, "--older-than"))
    _report(
        "tasks",
        result,
        human=lambda: render.message(
            (
                f"{'would expire' if dry_run else 'expired'} {len(result['expired'])} "
                "queued task(s) past their expiry; "
                if result["expired"]
                else ""
            )
            + _counted(result, dry_run, "task(s)", "no tasks to remove")
        ),
    )
