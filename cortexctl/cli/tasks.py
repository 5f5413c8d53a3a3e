"""`cortexctl tasks`: submit work to nodes, follow it, read its result and its output.

With ``--wait`` (and in ``tasks wait``) the exit code is the task's own when it ran to an
exit, else one of 120-125 (see ``cortexctl.errors``): 120 wait timed out, 121 task timed
out, 122 rejected, 123 cancelled, 124 expired, 125 failed without an exit code or a CLI
error. A fan-out exits with the highest code of its tasks.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.completion import complete_node, complete_task
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import (
    DryRunOpt,
    SelectorOpt,
    duration,
    parse_labels,
    selector,
)
from cortexctl.errors import (
    EXIT_TASK_LOST,
    EXIT_WAIT_TIMED_OUT,
    CortexError,
    InvalidArgument,
    WaitEnded,
)

if TYPE_CHECKING:
    from cortexctl.cli.remote import Remote
    from cortexctl.core.clock import Pause
    from cortexctl.core.views import TaskLogs, TaskView
    from cortexctl.store.engine import Store

    Source = Store | Remote  # where the tasks are: the store, or a context's admin API

app = typer.Typer(
    help="Submit tasks to nodes, list, show, follow, wait for and cancel them.",
    no_args_is_help=True,
)

TaskArg = Annotated[
    str,
    typer.Argument(
        metavar="TASK", help="Task id or unique id prefix.", autocompletion=complete_task
    ),
]
EXIT_INTERRUPTED = 130


@contextlib.contextmanager
def cli_errors_as_wait_code(active: bool) -> Iterator[None]:
    """Under --wait the CLI's own errors exit 125, so no task's code is mistaken for one."""
    try:
        yield
    except WaitEnded:
        raise
    except CortexError as err:
        if not active:
            raise
        raise WaitEnded(str(err), EXIT_TASK_LOST) from None


def _remote(source: Source) -> Remote | None:
    from cortexctl.cli.remote import Remote

    return source if isinstance(source, Remote) else None


def _source(ctx: typer.Context) -> Source:
    obj = cli_context(ctx)
    return obj.remote() or obj.store()


def wait_for_tasks(
    source: Source, task_ids: Sequence[str], timeout_s: float | None, show_progress: bool
) -> list[TaskView]:
    """Wait until every task ends (``journal.wait``, or the admin API's WaitTask); a
    timeout (exit 120) leaves them."""
    label = task_ids[0] if len(task_ids) == 1 else f"{len(task_ids)} tasks"
    remote = _remote(source)
    with render.spinner(f"waiting for task {label}", show_progress):
        if remote is not None:
            ended, waiting = remote.tasks_wait(task_ids, timeout_s)
        else:
            ended, waiting = _wait_in_store(source, task_ids, timeout_s)  # type: ignore[arg-type]
    if waiting:
        first = waiting[0]
        raise WaitEnded(
            f"{render.names(waiting)} still not ended after {timeout_s:g}s; "
            f"the task is left as it is: wait again with `cortexctl tasks wait {first}`, "
            f"or cancel it with `cortexctl tasks cancel {first}`",
            EXIT_WAIT_TIMED_OUT,
        )
    return ended


def _wait_in_store(
    store: Store, task_ids: Sequence[str], timeout_s: float | None
) -> tuple[list[TaskView], list[str]]:
    from cortexctl.core import journal
    from cortexctl.core.clock import Deadline

    deadline = None if timeout_s is None else Deadline.after(timeout_s)
    with _woken_pause(store, journal.WAIT_POLL_S) as pause:
        result = journal.wait(store.session, task_ids, deadline=deadline, pause=pause)
    return result.ended, result.waiting


@contextlib.contextmanager
def _woken_pause(store: Store, poll_s: float) -> Iterator[Pause]:
    """A pause woken by the commit that ends a task or stores its live output (PostgreSQL
    LISTEN, SQLite data_version); the look every ``poll_s`` stays as the safety net."""
    from cortexctl.store.listen import CHANGES_CHANNEL, TASKS_CHANNEL, ChangeListener

    listener = ChangeListener(store.url, (CHANGES_CHANNEL, TASKS_CHANNEL))
    with contextlib.closing(listener):
        yield listener.pause(poll_s)


def _interrupted(source: Source, task_ids: Sequence[str]) -> None:
    """Ctrl-C while waiting: on a terminal, offer to cancel; otherwise say how to."""
    shown = render.names(list(task_ids))
    if render.is_interactive():
        sys.stderr.write("\n")
        if render.ask(f"cancel {shown} too?"):
            reason = "cancelled by an operator (Ctrl-C)"
            remote = _remote(source)
            if remote is not None:
                for task_id in task_ids:
                    with contextlib.suppress(CortexError):
                        remote.tasks_cancel(task_id, reason, dry_run=False)
            else:
                from cortexctl.core import audit, operations

                actor = audit.local_actor()  # audited like `tasks cancel`
                with source.session(write=True) as session:  # type: ignore[union-attr]
                    for task_id in task_ids:
                        with contextlib.suppress(CortexError):
                            operations.cancel_task(session, actor, task_id, reason)
            render.note(f"cancelled {shown}")
            raise typer.Exit(EXIT_INTERRUPTED)
    render.note(
        f"interrupted; {shown} keeps running. Follow it with `cortexctl tasks wait "
        f"{task_ids[0]}`, cancel it with `cortexctl tasks cancel {task_ids[0]}`"
    )
    raise typer.Exit(EXIT_INTERRUPTED)


def _wait_and_finish(
    source: Source, task_ids: Sequence[str], timeout_s: float | None, as_json: bool
) -> None:
    try:
        views = wait_for_tasks(source, task_ids, timeout_s, not as_json)
    except KeyboardInterrupt:
        _interrupted(source, task_ids)
        return
    _finish(views, as_json, fan_out=len(task_ids) > 1)


def _finish(views: list[TaskView], as_json: bool, *, fan_out: bool = False) -> None:
    """Print ended tasks; exit with the task's own code, or the worst of a fan-out."""
    from cortexctl.core.views import wait_exit_code

    if as_json:
        render.emit(views if fan_out else views[0], human=lambda: None)
    for view in views:
        if not as_json and not render.quiet():
            if fan_out:
                render.note(f"=== {view.node_name} ({view.id})")
            render.task_output(view.stdout, sys.stdout)
            render.task_output(view.stderr, sys.stderr)
            detail = f" (exit code {view.exit_code})" if view.exit_code is not None else ""
            render.note(
                f"task {view.id} {view.state}{detail}" + (f": {view.error}" if view.error else "")
            )
    codes = [wait_exit_code(view) for view in views]
    if fan_out and not as_json:
        ok = sum(1 for code in codes if code == 0)
        render.note(f"{ok} of {len(views)} task(s) succeeded")
    worst = max(codes)
    if worst:
        raise typer.Exit(worst)


@app.command("submit")
def submit(
    ctx: typer.Context,
    node: Annotated[
        str | None,
        typer.Argument(
            metavar="NODE",
            help="Node name, id or unique id prefix (or -l SELECTOR for many).",
            autocompletion=complete_node,
        ),
    ] = None,
    argv: Annotated[
        list[str] | None,
        typer.Argument(metavar="[-- ARGV...]", help="Command and arguments, run without a shell."),
    ] = None,
    labels: SelectorOpt = None,
    script: Annotated[
        str | None, typer.Option(metavar="TEXT", help="A bash script (PERMISSIVE nodes only).")
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Runtime limit on the node (capped by the node's policy); the task ends "
            "TIMED_OUT (exit 121 with --wait). To bound the wait, see --wait-timeout.",
        ),
    ] = None,
    expire_after: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="End it EXPIRED if no node has taken it by then [default: hub.task_expiry].",
        ),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env", metavar="KEY=VALUE", help="Environment variable for the task (repeatable)."
        ),
    ] = None,
    cwd: Annotated[
        str, typer.Option(metavar="DIR", help="Working directory inside the node's workspace.")
    ] = "",
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Block until the task ends; exit with its exit code."),
    ] = False,
    wait_timeout: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="With --wait: give up waiting after this long (exit 120; the task is left "
            "as it is), as `tasks wait --timeout` does.",
        ),
    ] = None,
    request_id: Annotated[
        str | None,
        typer.Option(
            metavar="ID",
            help="A client request id: a retry with the same id makes no second task.",
        ),
    ] = None,
) -> None:
    """Submit a task to a node (or one per node matching -l); it is dispatched within a
    second if the node is connected.

    The task id goes to stderr at once. With --wait the exit code is the task's own, or
    120-125 when it did not run to an exit (see the README's exit codes); Ctrl-C asks
    whether to cancel it.

    Example: cortexctl tasks submit build-01 --wait --env CI=1 -- git status --short
    """
    as_json = render.machine()  # -o json|jsonl|yaml (or --json), anywhere on the line
    from cortexctl.core import states
    from cortexctl.core.selectors import check_target

    if labels is not None and node is not None and not script:
        # With -l there is no NODE: every word after `--` is the command.
        argv, node = [node, *(argv or [])], None
    check_target(node, labels)  # exit 2 even with --wait
    if wait_timeout is not None and not wait:
        raise InvalidArgument("--wait-timeout goes with --wait")
    with cli_errors_as_wait_code(wait):
        wanted = selector(labels)
        timeout_s = duration(timeout, "--timeout") or 0
        wait_timeout_s = duration(wait_timeout, "--wait-timeout")
        obj = cli_context(ctx)
        expire_s = duration(expire_after, "--expire-after")
        source: Source
        if (remote := obj.remote()) is not None:
            states.check_expire_after(expire_s)  # else the hub's hub.task_expiry
            source = remote
            done, _ = remote.tasks_submit(
                wanted,
                node=node or "",
                selector=labels or "",
                argv=argv or [],
                script=script or "",
                timeout_s=timeout_s,
                env=parse_labels(env) if env else {},
                cwd=cwd,
                expire_after_ms=0 if expire_s is None else max(1, int(expire_s * 1000)),
                request_id=request_id or "",
            )
        else:
            from cortexctl.core import audit, operations

            if expire_s is None:
                expire_s = obj.settings["hub.task_expiry"] or None
            source = store = obj.store()
            with store.session(write=True) as session:
                done = operations.submit_tasks(
                    session,
                    audit.local_actor(),
                    node=node,
                    selector=wanted,
                    argv=argv or [],
                    script=script or "",
                    timeout_s=timeout_s,
                    env=parse_labels(env) if env else {},
                    cwd=cwd,
                    defaults=obj.sandbox_defaults,
                    expire_after_s=expire_s,
                    request_id=request_id or "",
                ).done
    for item in done.created:
        render.note(f"task {item.id} submitted to node {item.node_name}")
        if item.node_name in done.not_connected:
            render.note(f"node {item.node_name} is not connected; the task waits until it is")
    if (rejected := done.rejected) is not None:
        if wait:
            raise WaitEnded(
                f"task {rejected.id} rejected: {rejected.error}",
                states.NO_EXIT_CODES[states.REJECTED],
            )
        render.emit(rejected, as_json=as_json, human=lambda: None)
        raise CortexError(f"task {rejected.id} rejected: {rejected.error}")
    if wait:
        with cli_errors_as_wait_code(True):
            _wait_and_finish(source, [s.id for s in done.created], wait_timeout_s, as_json)
        return
    if not done.fan_out:
        only = done.tasks[0]
        render.emit(only, as_json=as_json, human=lambda: render.message(only.id))
        return

    def summary() -> None:
        render.print_table(
            ["NODE", "TASK", "STATE", "ERROR"],
            [(s.node_name, s.id, s.state, s.error) for s in done.tasks],
        )
        render.note(
            f"submitted {len(done.created)} task(s) to {len(done.tasks)} node(s) matching "
            f"-l {wanted}" + (f"; skipped {render.names(done.skipped)}" if done.skipped else "")
        )

    render.emit(done.tasks, as_json=as_json, human=summary)


@app.command("list")
def list_(
    ctx: typer.Context,
    node: Annotated[
        str | None,
        typer.Option(help="Only this node's tasks (id or name).", autocompletion=complete_node),
    ] = None,
    labels: SelectorOpt = None,
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Only tasks in this state (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
) -> None:
    """List tasks, newest first.

    Example: cortexctl tasks list -l zone=eu --state running
    """
    wanted = selector(labels)
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        views = remote.tasks_list(
            node=node or "", selector=labels or "", states=state or [], limit=limit
        )
    else:
        from cortexctl.core import operations

        with obj.store().session() as session:
            views = operations.list_tasks(
                session, node=node, selector=wanted, states=state or [], limit=limit
            )
    render.emit(
        views,
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
def show(ctx: typer.Context, task_id: TaskArg) -> None:
    """Show a task with its output.

    Example: cortexctl tasks show tk_0123456789abcdef --json
    """
    v = _get_task(_source(ctx), task_id)
    render.emit(
        v,
        human=lambda: render.print_fields(
            [
                ("id", v.id),
                ("node", f"{v.node_name} ({v.node_id})"),
                ("state", v.state),
                ("command", " ".join(v.argv) if v.argv else "(script)"),
                ("exit code", v.exit_code),
                ("error", v.error),
                ("created", v.created_at),
                ("expires", v.expires_at),
                ("finished", v.finished_at),
                ("stdout", v.stdout.rstrip("\n")),
                ("stderr", v.stderr.rstrip("\n")),
            ],
            multiline=("stdout", "stderr"),
        ),
    )


@app.command("logs")
def logs(
    ctx: typer.Context,
    task_id: TaskArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the task ends.")
    ] = False,
) -> None:
    """Print a task's stdout (to stdout) and stderr (to stderr).

    With -f, output is printed as the journal gets it, until the task ends.

    Example: cortexctl tasks logs tk_0123 -f
    """
    as_json = render.machine()  # -o json|jsonl|yaml (or --json), anywhere on the line
    source = _source(ctx)
    if not follow:
        current = _logs_now(source, task_id)
        if as_json:
            render.emit(current, human=lambda: None)
            return
        render.task_output(current.stdout, sys.stdout)
        render.task_output(current.stderr, sys.stderr)
    else:
        if as_json:
            from collections import deque

            # Only the ended task's logs are printed.
            render.emit(deque(_follow_logs(source, task_id), maxlen=1)[0], human=lambda: None)
            return
        out_at = err_at = 0
        try:
            for current in _follow_logs(source, task_id):
                render.task_output(current.stdout[out_at:], sys.stdout)
                render.task_output(current.stderr[err_at:], sys.stderr)
                out_at, err_at = len(current.stdout), len(current.stderr)
        except KeyboardInterrupt:
            return
    if current.output_truncated:
        render.note(f"(task {current.id}: output truncated at the node's limit)")


@app.command("wait")
def wait(
    ctx: typer.Context,
    task_id: TaskArg,
    timeout: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION", help="Give up after this long (exit 120); default: wait forever."
        ),
    ] = None,
) -> None:
    """Wait for a task to end; exit with its exit code (120-125 if it ran to none).

    Example: cortexctl tasks wait tk_0123456789abcdef --timeout 10m
    """
    as_json = render.machine()  # -o json|jsonl|yaml (or --json), anywhere on the line
    with cli_errors_as_wait_code(True):
        timeout_s = duration(timeout, "--timeout")
        source = _source(ctx)
        resolved = _get_task(source, task_id).id
        _wait_and_finish(source, [resolved], timeout_s, as_json)


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    task_id: TaskArg,
    reason: Annotated[
        str, typer.Option(metavar="TEXT", help="Why, for the journal.")
    ] = "cancelled by an operator",
    dry_run: DryRunOpt = False,
) -> None:
    """Cancel a task; a running one is stopped on its node.

    Example: cortexctl tasks cancel tk_0123456789abcdef --reason 'wrong branch'
    """
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        v = remote.tasks_cancel(task_id, reason, dry_run)
    else:
        from cortexctl.core import audit, operations

        with obj.store().session(write=not dry_run) as session:
            v = operations.cancel_task(
                session, audit.local_actor(), task_id, reason, dry_run=dry_run
            )
    render.emit(
        {"id": v.id, "state": v.state, "dry_run": dry_run},
        human=lambda: render.message(
            f"would cancel task {v.id} ({v.state})" if dry_run else f"cancelled task {v.id}"
        ),
    )


def _get_task(source: Source, ref: str) -> TaskView:
    remote = _remote(source)
    if remote is not None:
        return remote.tasks_show(ref)
    from cortexctl.core import journal

    with source.session() as session:  # type: ignore[union-attr]
        return journal.get_task(session, ref)


def _logs_now(source: Source, ref: str) -> TaskLogs:
    from cortexctl.core.views import TaskLogs

    if _remote(source) is not None:
        return TaskLogs.of(_get_task(source, ref))
    from cortexctl.core import journal

    with source.session() as session:  # type: ignore[union-attr]
        return journal.task_logs(session, ref)


def _follow_logs(source: Source, ref: str) -> Iterator[TaskLogs]:
    from cortexctl.core.views import TaskLogs

    remote = _remote(source)
    if remote is not None:
        for view in remote.tasks_watch(ref):
            yield TaskLogs.of(view)
        return
    from cortexctl.core import journal

    with _woken_pause(source, journal.LOGS_POLL_S) as pause:  # type: ignore[arg-type]
        yield from journal.follow_logs(source.session, ref, pause=pause)  # type: ignore[union-attr]
