"""`cortexctl tasks`: submit work to a node, follow it, read its result."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.completion import complete_node, complete_task
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import JsonOpt, duration, parse_labels
from cortexctl.errors import EXIT_FAILED, CortexError, UsageError

if TYPE_CHECKING:
    from cortexctl.core.journal import TaskView
    from cortexctl.store.engine import Store

app = typer.Typer(
    help="Submit tasks to nodes, list, show, wait for and cancel them.", no_args_is_help=True
)

TaskArg = Annotated[
    str, typer.Argument(metavar="TASK", help="Task id.", autocompletion=complete_task)
]
WAIT_POLL_S = 0.2


def wait_for_task(
    store: Store, task_id: str, timeout_s: float | None, show_progress: bool
) -> TaskView:
    """Poll the journal until the task ends; a timeout leaves the task as it is."""
    from cortexctl.core import journal

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with render.spinner(f"waiting for task {task_id}", show_progress):
        while True:
            with store.session() as session:
                view = journal.get_task(session, task_id)
            if view.state in journal.TERMINAL:
                return view
            if deadline is not None and time.monotonic() >= deadline:
                raise CortexError(
                    f"task {task_id} is still {view.state} after "
                    f"{timeout_s:g}s; wait again with `cortexctl tasks wait "
                    f"{task_id}`"
                )
            time.sleep(WAIT_POLL_S)


def _finish(view: TaskView, as_json: bool) -> None:
    """Print an ended task and exit 0 only if it succeeded."""
    if as_json:
        render.print_json(view)
    else:
        sys.stdout.write(view.stdout)
        sys.stderr.write(view.stderr)
        detail = f" (exit code {view.exit_code})" if view.exit_code is not None else ""
        render.note(
            f"task {view.id} {view.state}{detail}" + (f": {view.error}" if view.error else "")
        )
    if view.state != "succeeded":
        raise typer.Exit(EXIT_FAILED)


@app.command("submit")
def submit(
    ctx: typer.Context,
    node: Annotated[
        str,
        typer.Argument(metavar="NODE", help="Node id or name.", autocompletion=complete_node),
    ],
    argv: Annotated[
        list[str] | None,
        typer.Argument(metavar="[-- ARGV...]", help="Command and arguments, run without a shell."),
    ] = None,
    script: Annotated[
        str | None, typer.Option(metavar="TEXT", help="A bash script (PERMISSIVE nodes only).")
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(metavar="SECONDS", help="Runtime limit (capped by the node's policy)."),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env", metavar="KEY=VALUE", help="Environment variable for the task (repeatable)."
        ),
    ] = None,
    cwd: Annotated[str, typer.Option(help="Working directory inside the node's workspace.")] = "",
    wait: Annotated[
        bool, typer.Option("--wait", help="Block until the task ends; exit 0 only if it succeeded.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Submit a task to a node; it is dispatched within a second if the node is connected.

    Example: cortexctl tasks submit build-01 --wait -- python3 -c 'print(42)'
    """
    from cortexctl.core import journal, nodes

    timeout_s = duration(timeout, "--timeout") or 0
    task_env = parse_labels(env) if env else {}
    journal.check_task_shape(argv or [], script or "", task_env, cwd)
    obj = cli_context(ctx)
    store = obj.store()
    with store.session(write=True) as session:
        target = nodes.resolve_node(session, node)
        view = journal.submit_task(
            session,
            target,
            argv=argv or [],
            script=script or "",
            timeout_s=int(timeout_s + 0.999),
            env=task_env,
            cwd=cwd,
            defaults=obj.sandbox_defaults,
        )
        online = nodes.show_node(session, target.id, obj.sandbox_defaults).online
    if view.state == journal.REJECTED:
        render.emit(view, as_json=as_json, human=lambda: None)
        raise CortexError(f"task {view.id} rejected: {view.error}")
    if not online:
        render.note(f"node {view.node_name} is not connected; the task waits until it is")
    if wait:
        _finish(wait_for_task(store, view.id, None, not as_json), as_json)
        return
    render.emit(
        {"id": view.id, "state": view.state, "node_id": view.node_id},
        as_json=as_json,
        human=lambda: render.message(view.id),
    )


@app.command("list")
def list_(
    ctx: typer.Context,
    node: Annotated[
        str | None,
        typer.Option(help="Only this node's tasks (id or name).", autocompletion=complete_node),
    ] = None,
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Only tasks in this state (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List tasks, newest first.

    Example: cortexctl tasks list --node build-01 --state running
    """
    from cortexctl.core import journal, nodes

    states = [s.lower() for s in state or []]
    for name in states:
        if name not in journal.STATES:
            raise UsageError(f"bad --state {name!r}: expected one of {', '.join(journal.STATES)}")
    with cli_context(ctx).store().session() as session:
        node_id = nodes.resolve_node(session, node).id if node else None
        views = journal.list_tasks(session, node_id=node_id, states=states, limit=limit)
    render.emit(
        views,
        as_json=as_json,
        human=lambda: render.print_table(
            ["ID", "NODE", "STATE", "EXIT", "COMMAND", "CREATED"],
            [
                (
                    v.id,
                    v.node_name,
                    v.state,
                    v.exit_code,
                    " ".join(v.argv)
                    if v.argv
                    else "script: " + v.script.splitlines()[0][:40]
                    if v.script
                    else "",
                    render.age(v.created_at),
                )
                for v in views
            ],
            empty="no tasks",
        ),
    )


@app.command("show")
def show(ctx: typer.Context, task_id: TaskArg, as_json: JsonOpt = False) -> None:
    """Show a task with its output.

    Example: cortexctl tasks show tk_0123456789abcdef --json
    """
    from cortexctl.core import journal

    with cli_context(ctx).store().session() as session:
        v = journal.get_task(session, task_id)
    render.emit(
        v,
        as_json=as_json,
        human=lambda: render.print_fields(
            [
                ("id", v.id),
                ("node", f"{v.node_name} ({v.node_id})"),
                ("state", v.state),
                ("command", " ".join(v.argv) if v.argv else "(script)"),
                ("exit code", v.exit_code),
                ("error", v.error),
                ("created", v.created_at),
                ("finished", v.finished_at),
                ("stdout", v.stdout.rstrip("\n")),
                ("stderr", v.stderr.rstrip("\n")),
            ]
        ),
    )


@app.command("wait")
def wait(
    ctx: typer.Context,
    task_id: TaskArg,
    timeout: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION", help="Give up after this long (exit 1); default: wait forever."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Wait for a task to end; exit 0 only if it succeeded.

    Example: cortexctl tasks wait tk_0123456789abcdef --timeout 10m
    """
    timeout_s = duration(timeout, "--timeout")
    store = cli_context(ctx).store()
    _finish(wait_for_task(store, task_id, timeout_s, not as_json), as_json)


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    task_id: TaskArg,
    reason: Annotated[str, typer.Option(help="Why, for the journal.")] = "cancelled by an operator",
    as_json: JsonOpt = False,
) -> None:
    """Cancel a task; a running one is stopped on its node.

    Example: cortexctl tasks cancel tk_0123456789abcdef --reason 'wrong branch'
    """
    from cortexctl.core import journal

    with cli_context(ctx).store().session(write=True) as session:
        v = journal.cancel_task(session, task_id, reason)
    render.emit(
        {"id": v.id, "state": v.state},
        as_json=as_json,
        human=lambda: render.message(f"cancelled task {v.id}"),
    )
