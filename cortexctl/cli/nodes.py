"""`cortexctl nodes`: the mesh's nodes, their sandbox policy, revocation."""

from __future__ import annotations

from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.completion import complete_node
from cortexctl.cli.context import NotRemote, cli_context
from cortexctl.cli.options import (
    DryRunOpt,
    SelectorOpt,
    SelfReportedOpt,
    YesOpt,
    duration,
    selector,
)
from cortexctl.core.views import to_jsonable
from cortexctl.errors import InvalidArgument

app = typer.Typer(
    help="List and inspect nodes, set their sandbox and quota, cordon, drain, rename, "
    "revoke and delete them.",
    no_args_is_help=True,
)

NodeArg = Annotated[
    str,
    typer.Argument(
        metavar="NODE", help="Node name, id or unique id prefix.", autocompletion=complete_node
    ),
]
OptionalNodeArg = Annotated[
    str | None,
    typer.Argument(
        metavar="NODE",
        help="Node name, id or unique id prefix (or -l SELECTOR).",
        autocompletion=complete_node,
    ),
]


@app.command("list")
def list_(
    ctx: typer.Context,
    active: Annotated[bool, typer.Option("--active", help="Leave out revoked nodes.")] = False,
    labels: SelectorOpt = None,
) -> None:
    """List nodes with their status and sandbox mode.

    Example: cortexctl nodes list -l zone=eu --json | jq '.[] | select(.online)'
    """
    obj = cli_context(ctx)
    wanted = selector(labels)
    if (remote := obj.remote()) is not None:
        views = remote.nodes_list(include_revoked=not active)
    else:
        from cortexctl.core import nodes

        with obj.store().session() as session:
            views = nodes.list_nodes(session, obj.sandbox_defaults, include_revoked=not active)
    if wanted is not None:
        views = [v for v in views if wanted.matches(v.labels)]
    wide = render.wide()  # -o wide: labels, policy revision and agent version too
    render.emit(
        views,
        human=lambda: render.print_table(
            ["NAME", "ID", "STATUS", "SANDBOX", "ISOL", "HOSTNAME", "LAST HEARTBEAT"]
            + (["LABELS", "POLICY", "AGENT"] if wide else []),
            [
                (
                    v.name,
                    v.id,
                    v.status + (",cordoned" if v.cordoned else ""),
                    v.sandbox + ("" if v.sandbox_configured else " (default)"),
                    v.isolation,
                    v.hostname,
                    render.age(v.last_heartbeat),
                    *(
                        (
                            ",".join(f"{k}={x}" for k, x in v.labels.items()),
                            f"{v.policy_acked}/{v.policy_revision}",
                            v.agent_version,
                        )
                        if wide
                        else ()
                    ),
                )
                for v in views
            ],
            empty="no nodes match the selector"
            if wanted is not None
            else "no nodes yet; create an invite with `cortexctl invites create`",
        ),
    )


@app.command("show")
def show(ctx: typer.Context, node: NodeArg) -> None:
    """Show one node in detail.

    Example: cortexctl nodes show build-01
    """
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        v, usage = remote.nodes_show(node)
    else:
        from cortexctl.core import quotas

        with obj.store().session() as session:
            v, usage = quotas.show_node_detail(
                session, node, obj.sandbox_defaults, obj.quota_defaults
            )
    render.emit(
        {**to_jsonable(v), "mirror": usage},
        human=lambda: render.print_fields(
            [
                ("name", v.name),
                ("id", v.id),
                ("status", v.status + (" (cordoned: no new tasks)" if v.cordoned else "")),
                ("hostname", v.hostname),
                ("sandbox", v.sandbox + ("" if v.sandbox_configured else " (hub default)")),
                ("allowed commands", ", ".join(v.allowed_commands)),
                ("allowed prefixes", ", ".join(v.allowed_prefixes)),
                ("allowed env", ", ".join(v.allowed_env)),
                ("network", v.network),
                ("limits", render.limits_text(v.limits)),
                ("isolation", v.isolation),
                ("policy revision", v.policy_revision),
                ("hub", v.hub_id),
                ("last heartbeat", v.last_heartbeat),
                ("running tasks", v.running_tasks),
                ("labels", ", ".join(f"{k}={x}" for k, x in v.trusted_labels.items())),
                (
                    "self-reported labels",
                    ", ".join(f"{k}={x}" for k, x in v.self_labels.items())
                    + (" (set by the node itself, not trusted)" if v.self_labels else ""),
                ),
                ("agent version", v.agent_version),
                ("joined", v.created_at),
                ("mirror", render.mirror_usage(usage)),
                ("mirror quota", render.mirror_quota(usage)),
            ]
        ),
    )


@app.command("quota")
def quota(
    ctx: typer.Context,
    node: NodeArg,
    bytes_: Annotated[
        str | None,
        typer.Option(
            "--bytes",
            metavar="SIZE",
            help="Most bytes the node's mirror may hold, e.g. 10GiB (0: no limit).",
        ),
    ] = None,
    files: Annotated[
        int | None,
        typer.Option("--files", metavar="N", min=0, help="Most files it may hold (0: no limit)."),
    ] = None,
    clear: Annotated[
        bool,
        typer.Option(
            "--clear", help="Go back to the hub default (sync.quota_bytes, sync.quota_files)."
        ),
    ] = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Set a node's mirror quota; an upload past it is refused (RESOURCE_EXHAUSTED).

    The quota and the usage are kept in the store, so every hub sharing it enforces them.
    Setting only one of --bytes/--files fixes the other at the current hub default.

    Example: cortexctl nodes quota build-01 --bytes 10GiB --files 100000
    """
    from cortexctl.units import parse_bytes

    size = None if bytes_ is None else parse_bytes(bytes_, what="--bytes")
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        if dry_run:
            raise NotRemote(
                "`nodes quota --dry-run` is not available through a remote context yet; "
                "use `nodes show NODE` to see the quota and what the node holds"
            )
        given = {"quota_bytes": size, "quota_files": files}
        usage = remote.nodes_quota(
            node=node,
            clear=clear,
            **{key: value for key, value in given.items() if value is not None},
        )
    else:
        from cortexctl.core import audit, operations

        with obj.store().session(write=not dry_run) as session:
            usage = operations.set_quota(
                session,
                audit.local_actor(),
                node,
                quota_bytes=size,
                quota_files=files,
                clear=clear,
                defaults=obj.quota_defaults,
                dry_run=dry_run,
            )

    def human() -> None:
        render.message(
            f"node {usage.node_name} ({usage.node_id}): mirror quota "
            f"{'would be ' if dry_run else ''}{render.mirror_quota(usage)}; "
            f"holds {render.mirror_usage(usage)}"
        )
        if dry_run:
            render.note("dry run: nothing changed")

    render.emit(render.to_jsonable(usage) | {"dry_run": dry_run}, human=human)


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
            "--allow",
            metavar="CMD",
            help="Allowed command (repeatable; replaces the list). A bare name allows every "
            "argument; an entry with spaces pins the first arguments: 'git status'.",
        ),
    ] = None,
    allow_env: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-env",
            metavar="NAME",
            help="Env variable a STRICT task may set (repeatable; adds to the list).",
        ),
    ] = None,
    clear_env: Annotated[
        bool, typer.Option("--clear-env", help="Empty the node's env allow-list first.")
    ] = False,
    network: Annotated[
        bool | None,
        typer.Option(
            "--network/--no-network",
            help="Let tasks use the network, or not (--no-network needs bubblewrap).",
            show_default=False,
        ),
    ] = None,
    cpu_time: Annotated[
        str | None, typer.Option(metavar="DURATION", help="RLIMIT_CPU of each task.")
    ] = None,
    address_space: Annotated[
        str | None, typer.Option(metavar="SIZE", help="RLIMIT_AS (virtual memory), e.g. 4GiB.")
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="RLIMIT_NPROC (counts all of the agent user's processes; root is not bound).",
        ),
    ] = None,
    file_size: Annotated[
        str | None, typer.Option(metavar="SIZE", help="RLIMIT_FSIZE: largest file written.")
    ] = None,
    open_files: Annotated[int | None, typer.Option(metavar="N", help="RLIMIT_NOFILE.")] = None,
    default_limits: Annotated[
        bool, typer.Option("--default-limits", help="Drop the node's own limits first.")
    ] = False,
    labels: SelectorOpt = None,
    self_reported: SelfReportedOpt = False,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
) -> None:
    """Set the sandbox policy of nodes; connected nodes get it within two seconds.

    A change of many nodes at once (--all or -l) asks first; --yes answers for cron.

    STRICT runs argv only, never a shell: argv[0] must be an allowed bare name (resolved on
    the agent's PATH) or the argv must start with an allowed pin, and a task may set only
    the env names allowed here. A bare name allows every argument, so allowing a shell,
    interpreter or a tool with exec features (env, xargs, find, awk, git, ssh, make, tar,
    editors, pagers) lets a task run any code: pin them, and run the agent with bubblewrap
    (`agent --isolation bwrap`), which also hides its credential. A pin fixes only the
    first arguments, not the ones after it (find . -exec ...), nor the config a tool reads
    from the workspace (.git/config). The warnings printed here name known tools only; the
    list is not complete. Without bubblewrap a task can read and write whatever the agent's
    user can, the agent's state dir and credential included (cp, tee, sort -o, git log
    --output). Options not given keep their current value.

    Example: cortexctl nodes sandbox build-01 --strict --allow ls --allow 'git status'
    """
    from cortexctl.core import sandbox as policy
    from cortexctl.core.views import SandboxChanged
    from cortexctl.units import parse_bytes, parse_duration

    if strict and permissive:
        raise InvalidArgument("choose one of --strict or --permissive")
    if sum((bool(node_refs), all_nodes, labels is not None)) != 1:
        raise InvalidArgument("name the nodes to change, or give --all or -l SELECTOR (only one)")
    limits: dict[str, int] = {}
    if cpu_time is not None:
        limits["cpu_seconds"] = int(parse_duration(cpu_time, what="--cpu-time"))
    if address_space is not None:
        limits["address_space_bytes"] = parse_bytes(address_space, what="--address-space")
    if processes is not None:
        limits["processes"] = processes
    if file_size is not None:
        limits["file_size_bytes"] = parse_bytes(file_size, what="--file-size")
    if open_files is not None:
        limits["open_files"] = open_files
    mode = "strict" if strict else "permissive" if permissive else None
    if (
        mode is None
        and allow is None
        and not allow_env
        and not clear_env
        and network is None
        and not limits
        and not default_limits
    ):
        raise InvalidArgument(
            "nothing to change: give --strict or --permissive, --allow, --allow-env, "
            "--clear-env, --network/--no-network or a limit"
        )
    if allow is not None:
        for text in policy.allow_warnings(*policy.parse_allow_entries(allow)):
            render.warning(text)
    for text in policy.env_warnings(allow_env or []):
        render.warning(text)
    obj = cli_context(ctx)
    wanted = selector(labels)
    if (remote := obj.remote()) is not None:

        def change(dry: bool) -> list[SandboxChanged]:
            return remote.nodes_sandbox(
                nodes=node_refs or [],
                all=all_nodes,
                selector=labels or "",
                include_self_reported=self_reported,
                mode=mode or "",
                set_allowed_commands=allow is not None,
                allowed_commands=allow or [],
                add_env=allow_env or [],
                clear_env=clear_env,
                network="" if network is None else "allow" if network else "deny",
                limits=limits,
                reset_limits=default_limits,
                dry_run=dry,
            )

    else:
        from cortexctl.core import audit, operations

        store = obj.store()

        def change(dry: bool) -> list[SandboxChanged]:
            with store.session(write=not dry) as session:
                changed = operations.set_sandbox(
                    session,
                    audit.local_actor(),
                    node_refs or [],
                    all_nodes=all_nodes,
                    selector=wanted,
                    include_self_reported=self_reported,
                    mode=mode,
                    allowed_commands=allow,
                    defaults=obj.sandbox_defaults,
                    add_env=allow_env or [],
                    clear_env=clear_env,
                    deny_network=None if network is None else not network,
                    limits=limits,
                    reset_limits=default_limits,
                    dry_run=dry,
                )
            return [SandboxChanged.of(c) for c in changed]

    if not dry_run and (all_nodes or wanted is not None):
        planned = change(True)
        if planned:
            render.confirm(
                f"change the sandbox of {len(planned)} node(s): "
                + render.names([c.node_name for c in planned])
                + "?",
                yes=yes,
            )
    changes = change(dry_run)
    columns = ["NAME", "ID", "SANDBOX", "ALLOWED", "ENV", "NETWORK", "REVISION"]
    rows = [
        (
            c.node_name,
            c.node_id,
            c.sandbox,
            ", ".join([*c.allowed_commands, *c.allowed_prefixes]),
            ", ".join(c.allowed_env),
            c.network,
            c.revision,
        )
        for c in changes
    ]
    render.emit(
        changes,
        human=lambda: (
            render.print_table(columns, rows, empty="no nodes to change")
            if not dry_run
            else render.dry_run_table(columns, rows)
        ),
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    node: OptionalNodeArg = None,
    labels: SelectorOpt = None,
    self_reported: SelfReportedOpt = False,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
) -> None:
    """Revoke a node: its credential stops working, its stream ends, its tasks fail.

    Within the hub's poll interval (0.5 s by default, 2 s at most) its stream ends and its
    uploads in flight are cut. Its name stays taken until the node is deleted
    (`nodes delete`). Asks first on a terminal; --yes answers for scripts. -l revokes
    every matching node.

    Example: cortexctl nodes revoke build-01 --yes
    """
    from cortexctl.core.views import NodeRevoked

    refs = _one_or_selector(node, labels)
    wanted = selector(labels)
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:

        def run(dry: bool) -> list[NodeRevoked]:
            return remote.nodes_revoke(
                nodes=refs,
                selector=labels or "",
                include_self_reported=self_reported,
                dry_run=dry,
            )

    else:
        from cortexctl.core import audit, operations

        store = obj.store()

        def run(dry: bool) -> list[NodeRevoked]:
            with store.session(write=not dry) as session:
                return operations.revoke_nodes(
                    session,
                    audit.local_actor(),
                    refs,
                    selector=wanted,
                    include_self_reported=self_reported,
                    dry_run=dry,
                )

    if not dry_run:
        planned = run(True)
        if not planned:
            render.message("no nodes match the selector")
            return
        render.confirm(
            f"revoke {render.names([f'{r.name} ({r.id})' for r in planned])}"
            f" and fail {sum(r.failed_tasks for r in planned)} unfinished task(s)?",
            yes=yes,
        )
    results = run(dry_run)

    def human() -> None:
        for r in results:
            render.message(
                f"{'would revoke' if dry_run else 'revoked'} node {r.name} ({r.id}); "
                f"{'would fail' if dry_run else 'failed'} {r.failed_tasks} unfinished task(s)"
            )
        if not results:
            render.message("no nodes match the selector")

    render.emit(results[0] if node else results, human=human)


@app.command("delete")
def delete(
    ctx: typer.Context,
    node: NodeArg,
    keep_mirror: Annotated[
        bool,
        typer.Option(
            "--keep-mirror", help="Leave its mirror folder (gc mirrors removes it later)."
        ),
    ] = False,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
) -> None:
    """Delete a revoked or offline node: its row, journal and mirror go; its name is free.

    A connected node is refused (revoke it first). Its unfinished tasks end FAILED, then
    its journal rows are removed with it; its mirror folder is removed unless --keep-mirror.

    Example: cortexctl nodes delete laptop --yes
    """
    from cortexctl.core.views import NodeDeleted

    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:

        def run(dry: bool) -> NodeDeleted:
            return remote.nodes_delete(node, keep_mirror, dry)

    else:
        from cortexctl.core import audit, mirrors, operations

        store = obj.store()

        def run(dry: bool) -> NodeDeleted:
            return operations.delete_node(
                store,
                audit.local_actor(),
                node,
                obj.sandbox_defaults,
                mirrors_dir=obj.settings.mirrors_dir,
                keep_mirror=keep_mirror,
                dry_run=dry,
                local_hubs=mirrors.local_hub_ids(obj.settings.data_dir),
            )

    if not dry_run:
        plan = run(True)
        render.confirm(
            f"delete {plan.status} node {plan.name} ({plan.id}), its {plan.deleted_tasks} "
            f"task(s) and {'its mirror' if plan.mirror_state == 'removed' else 'no mirror'}?",
            yes=yes,
        )
    d = run(dry_run)
    would = "would " if dry_run else ""
    render.emit(
        d,
        human=lambda: render.message(
            f"{would}{'delete' if dry_run else 'deleted'} node {d.name} ({d.id}): "
            f"{d.failed_tasks} unfinished task(s) failed, {d.deleted_tasks} journal row(s) "
            f"removed, mirror {d.mirror_state}"
            + (f" ({d.mirror_files} file(s), {d.mirror_bytes} bytes)" if d.mirror_files else "")
            + ("" if dry_run else f"; the name {d.name} is free")
        ),
    )


@app.command("rename")
def rename(
    ctx: typer.Context,
    node: NodeArg,
    new_name: Annotated[str, typer.Argument(metavar="NEW", help="The new name (unique).")],
    dry_run: DryRunOpt = False,
) -> None:
    """Rename a node; the name must be free (else exit 5).

    Example: cortexctl nodes rename laptop-2 laptop
    """
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        result = remote.nodes_rename(node, new_name, dry_run)
    else:
        from cortexctl.core import audit, operations

        with obj.store().session(write=not dry_run) as session:
            result = operations.rename_node(
                session, audit.local_actor(), node, new_name, dry_run=dry_run
            )
    render.emit(
        result,
        human=lambda: render.message(
            f"{'would rename' if dry_run else 'renamed'} node {result.id}: "
            f"{result.old_name} -> {result.name}"
        ),
    )


def _cordon(ctx: typer.Context, node: str, cordoned: bool, dry_run: bool) -> None:
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        result = remote.nodes_cordon(node, cordoned, dry_run)
    else:
        from cortexctl.core import audit, operations

        with obj.store().session(write=not dry_run) as session:
            result = operations.set_cordon(
                session, audit.local_actor(), node, cordoned, dry_run=dry_run
            )
    verb = "cordon" if cordoned else "uncordon"
    render.emit(
        result,
        human=lambda: render.message(
            f"{'would ' + verb if dry_run else verb + 'ed'} node {result.name} ({result.id})"
            + ("; it takes no new tasks" if cordoned else "; it takes tasks again")
        ),
    )


@app.command("cordon")
def cordon(ctx: typer.Context, node: NodeArg, dry_run: DryRunOpt = False) -> None:
    """Stop new tasks for a node: submit refuses them (exit 5), the hub dispatches none.

    Running tasks go on; queued ones wait until `nodes uncordon` (or expire).

    Example: cortexctl nodes cordon build-01
    """
    _cordon(ctx, node, True, dry_run)


@app.command("uncordon")
def uncordon(ctx: typer.Context, node: NodeArg, dry_run: DryRunOpt = False) -> None:
    """Let a cordoned node take tasks again.

    Example: cortexctl nodes uncordon build-01
    """
    _cordon(ctx, node, False, dry_run)


@app.command("drain")
def drain(
    ctx: typer.Context,
    node: NodeArg,
    timeout: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="Give up waiting after this long (exit 120)."),
    ] = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Cordon a node, then wait until its running tasks have ended.

    Exits 0 once none is left; 120 if --timeout passes first (the node stays cordoned),
    as `tasks wait --timeout` does.

    Example: cortexctl nodes drain build-01 --timeout 10m && cortexctl nodes revoke build-01
    """
    from cortexctl.core.views import NodeCordon
    from cortexctl.errors import EXIT_WAIT_TIMED_OUT, WaitEnded

    timeout_s = duration(timeout, "--timeout")
    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        if dry_run:
            raise NotRemote(
                "`nodes drain --dry-run` is not available through a remote context yet; "
                "use `nodes show NODE` to see what it runs"
            )
        with render.spinner(f"draining node {node}", True):
            target, left, running = remote.nodes_drain(node, timeout_s)
        node_id, name = target.id, target.name
    else:
        from cortexctl.core import audit, nodes, operations
        from cortexctl.core.clock import Deadline

        store = obj.store()
        with store.session(write=not dry_run) as session:
            target = operations.set_cordon(
                session, audit.local_actor(), node, True, dry_run=dry_run
            )
            node_id, name = target.id, target.name
            planned = nodes.in_flight_tasks(session, node_id) if dry_run else []
        if dry_run:

            def plan() -> None:
                render.message(
                    f"would cordon node {name} ({node_id}) and wait for {len(planned)} "
                    f"running task(s){': ' + render.names(planned) if planned else ''}"
                )
                render.note("dry run: nothing changed")

            render.emit(target, human=plan)
            return
        deadline = None if timeout_s is None else Deadline.after(timeout_s)
        with render.spinner(f"draining node {name}", True):
            left = nodes.wait_drained(store.session, node_id, deadline=deadline)
        running = len(left)
    if left:
        raise WaitEnded(
            f"node {name} still runs {running} task(s) ({', '.join(left[:5])}) "
            f"after {timeout_s:g}s; it stays cordoned. Wait again, or cancel them "
            "with `cortexctl tasks cancel TASK`",
            EXIT_WAIT_TIMED_OUT,
        )
    result = NodeCordon(node_id, name, True, False)
    render.emit(
        result,
        human=lambda: render.message(f"drained node {name} ({node_id}): cordoned, no task running"),
    )


@app.command("rotate-credential")
def rotate_credential(
    ctx: typer.Context,
    node: NodeArg,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
) -> None:
    """Give a node a new credential, printed once; the old one stops working at once.

    "At once" means within the hub's poll interval (hub.poll_interval, 0.5 s by default;
    2 s at most on a loaded hub): its stream ends and its uploads in flight are cut.

    Put the new credential in the node's credential.json (field node_credential) and
    restart its agent. Asks first on a terminal; --yes answers for scripts.

    Example: cortexctl nodes rotate-credential build-01 --yes --json
    """
    from cortexctl.core.views import CredentialRotated

    obj = cli_context(ctx)
    if (remote := obj.remote()) is not None:
        target = remote.nodes_rotate(node, dry_run=True)  # which node, changing nothing
        node_id, name = target.id, target.name
    else:
        from cortexctl.core import nodes

        store = obj.store()
        with store.session() as session:
            found = nodes.resolve_node(session, node)
            node_id, name = found.id, found.name
    if dry_run:
        render.emit(
            CredentialRotated(id=node_id, name=name, node_credential="", dry_run=True),
            human=lambda: render.message(
                f"would give node {name} ({node_id}) a new credential; its stream would end"
            ),
        )
        return
    render.confirm(
        f"rotate the credential of node {name} ({node_id})? Its agent stops until it "
        "gets the new one",
        yes=yes,
    )
    if remote is not None:
        result = remote.nodes_rotate(node_id, dry_run=False)
    else:
        from cortexctl.core import audit, operations

        with store.session(write=True) as session:
            result = operations.rotate_credential(session, audit.local_actor(), node_id)

    def human() -> None:
        render.message(f"new credential for node {result.name} ({result.id}):")
        render.message(result.node_credential)
        render.note(
            "It is shown only now. The node's live stream ends; store the credential "
            "in its credential.json (node_credential) and restart its agent."
        )

    render.emit(result, human=human)


def _one_or_selector(node: str | None, labels: str | None) -> list[str]:
    if (node is None) == (labels is None):
        raise InvalidArgument("name one NODE, or give -l SELECTOR (not both)")
    return [node] if node is not None else []
