"""`cortexctl agent`: the reference node agent, and `agent sync` for one-off uploads."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import env_help, parse_labels
from cortexctl.errors import CortexError, InvalidArgument

if TYPE_CHECKING:
    from cortexctl.agent.runner import AgentOptions

app = typer.Typer()

HubOpt = Annotated[
    str | None,
    typer.Option(
        metavar="HOST:PORT",
        envvar="CORTEX_HUB",
        show_envvar=False,
        help=env_help(
            "The hub to join: HOST:PORT, or several comma-separated (a DNS name with several "
            "addresses counts as several); on losing one the agent moves to another "
            "[default: the one(s) in --state-dir].",
            "CORTEX_HUB",
        ),
    ),
]
# Sizes malloc's thresholds before the hub announces its chunk size (1 MiB by default).
SYNC_CHUNK_HINT = 1024 * 1024
CaCertOpt = Annotated[
    Path | None,
    typer.Option(
        metavar="FILE", help="PEM CA bundle that signed the hub's certificate; enables TLS."
    ),
]
CertOpt = Annotated[
    Path | None,
    typer.Option(metavar="FILE", help="PEM client certificate, for a hub that requires mTLS."),
]
KeyOpt = Annotated[Path | None, typer.Option(metavar="FILE", help="PEM key of --cert.")]
InsecureOpt = Annotated[
    bool, typer.Option("--insecure", help="Allow plaintext to a non-loopback hub.")
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option(metavar="DIR", help="Where the node credential is kept (mode 0600)."),
]


class IsolationChoice(enum.StrEnum):
    auto = "auto"
    bwrap = "bwrap"
    none = "none"


def default_state_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_dir("cortexctl")) / "agent"


def _required(hub: str | None, workspace: Path | None, state_dir: Path) -> tuple[str, Path]:
    from cortexctl.agent.state import remembered_hub

    hub = hub or remembered_hub(state_dir)
    if not hub:
        raise InvalidArgument("missing --hub HOST:PORT (or env CORTEX_HUB): the hub to join")
    if workspace is None:
        raise InvalidArgument("missing --workspace DIR: the directory tasks run in")
    if not workspace.is_dir():
        raise InvalidArgument(f"workspace {workspace} is not a directory; create it first")
    return hub, workspace


def invite_token(token: str | None, token_file: Path | None) -> tuple[str, str]:
    """(token, where it came from): --token-file, --token (with a warning), or the env."""
    import os
    import sys

    if token is not None and token_file is not None:
        raise InvalidArgument("give the invite once: --token-file FILE or --token, not both")
    if token_file is not None:
        try:
            text = sys.stdin.read() if str(token_file) == "-" else token_file.read_text()
        except OSError as err:
            raise InvalidArgument(
                f"cannot read --token-file {token_file}: {err.strerror}"
            ) from None
        value = text.strip()
        if not value:
            raise InvalidArgument(f"--token-file {token_file} is empty; put the invite token in it")
        return value, "file"
    if token is not None:
        render.note(
            "warning: --token puts the invite token on the command line, where other "
            "local users see it in `ps` and your shell keeps it in history; use "
            "--token-file FILE or CORTEX_INVITE_TOKEN"
        )
        return token.strip(), "flag"
    value = os.environ.get("CORTEX_INVITE_TOKEN", "").strip()
    return value, "env" if value else ""


@app.callback(invoke_without_command=True)
def agent(
    ctx: typer.Context,
    hub: HubOpt = None,
    workspace: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Directory tasks run in (and files sync from)."),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help=env_help(
                "File holding the invite token for the first join ('-': stdin); or give "
                "the token in the environment.",
                "CORTEX_INVITE_TOKEN",
            ),
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN",
            help="Invite token on the command line: visible to every local user in `ps` "
            "and kept in shell history; prefer --token-file (or the environment).",
        ),
    ] = None,
    rejoin: Annotated[
        bool,
        typer.Option(
            "--rejoin",
            help="Discard the credential kept in --state-dir and join afresh with the "
            "invite (replaces a revoked or unwanted credential).",
        ),
    ] = False,
    state_dir: StateDirOpt = None,
    name: Annotated[
        str | None, typer.Option(help="Requested node name (default: hostname).")
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", metavar="KEY=VALUE", help="Node label (repeatable)."),
    ] = None,
    sync: Annotated[
        bool,
        typer.Option(
            "--sync", help="Upload the workspace to the hub on connect, then what changes."
        ),
    ] = False,
    sync_interval: Annotated[
        str, typer.Option(metavar="DURATION", help="How often --sync rescans the workspace.")
    ] = "10s",
    ca_cert: CaCertOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    insecure: InsecureOpt = False,
    isolation: Annotated[
        IsolationChoice,
        typer.Option(
            help="How tasks are contained: bwrap (bubblewrap: filesystem read-only but the "
            "workspace, state dir hidden, private /tmp, network off when the policy says so), "
            "none (tasks can read and write what the agent's user can, its credential too), "
            "or auto (bwrap when present and working, else none with a warning).",
        ),
    ] = IsolationChoice.auto,
    log_level: Annotated[
        str, typer.Option(metavar="LEVEL", help="debug, info, warning, error.")
    ] = "info",
    log_format: Annotated[str, typer.Option(metavar="FORMAT", help="auto, text or json.")] = "auto",
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check the options, TLS files, state dir, credential or invite and "
            "isolation, print what the agent would do, and exit without connecting.",
        ),
    ] = False,
) -> None:
    """Run a node agent: join the hub, keep the stream open, run tasks under its sandbox.

    The first run needs an invite token, from --token-file FILE or CORTEX_INVITE_TOKEN
    (never on the command line, where `ps` shows it); the credential it gets is kept in
    --state-dir (one agent per state dir) so later runs need none. With a credential kept,
    an invite or --name is refused: a second node needs its own --state-dir, and --rejoin
    replaces the credential. It reconnects with backoff until stopped (SIGTERM or Ctrl-C).

    Every task runs in its own session with no_new_privs and the policy's rlimits; on a
    STRICT node its env holds only PATH, HOME, LANG, CORTEX_TASK_ID and the allowed names.
    With --isolation bwrap (the default when bubblewrap works) it also runs in a sandbox
    that cannot write outside the workspace nor see the state dir.

    Example: cortexctl agent --hub 127.0.0.1:50051 --token-file invite.token --workspace ~/work
    """
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    from cortexctl.agent.runner import Agent, AgentOptions
    from cortexctl.agent.transport import Transport
    from cortexctl.logs import setup_logging
    from cortexctl.units import parse_duration

    cli_context(ctx)  # agents need no store; only validate shared options
    state = (state_dir or default_state_dir()).expanduser()
    hub, workspace = _required(hub, workspace, state)
    invite, source = invite_token(token, token_file)
    transport = Transport(ca_cert=ca_cert, cert=cert, key=key, insecure=insecure)
    transport.check(hub)
    interval_s = parse_duration(sync_interval, what="--sync-interval")
    if interval_s <= 0:
        raise InvalidArgument("bad --sync-interval: give a positive duration, e.g. 10s")
    setup_logging(log_level, log_format)
    if sync:
        from cortexctl.tuning import tune_malloc

        tune_malloc(SYNC_CHUNK_HINT)
    from cortexctl.agent.isolation import IsolationUnavailable, choose_isolation

    state = (state_dir or default_state_dir()).expanduser()
    try:
        contained = choose_isolation(isolation.value, workspace.resolve(), [state])
    except IsolationUnavailable as err:
        raise InvalidArgument(str(err)) from None
    options = AgentOptions(
        hub=hub,
        workspace=workspace.resolve(),
        isolation=contained,
        state_dir=state,
        token=invite,
        token_source=source,
        rejoin=rejoin,
        name=name or "",
        labels=parse_labels(label),
        sync=sync,
        sync_interval_s=interval_s,
        transport=transport,
    )
    if dry_run:
        _print_plan(options)
        return
    asyncio.run(Agent(options).run())


def _print_plan(options: AgentOptions) -> None:
    """`agent --dry-run`: what the agent would do, decided as a run decides it."""
    from cortexctl.agent.runner import membership_to_use
    from cortexctl.agent.state import check_state_dir, load_membership

    check_state_dir(options.state_dir, create=False)
    kept = load_membership(options.state_dir) if options.state_dir.exists() else None
    use = membership_to_use(options, kept)
    transport = options.transport
    plan = {
        "hub": options.hub,
        "workspace": str(options.workspace),
        "state_dir": str(options.state_dir),
        "join": "rejoin" if use is not None else "invite",
        "node_id": use.node_id if use is not None else None,
        "node_name": (use.node_name if use is not None else options.name) or None,
        "token_source": options.token_source if use is None else "",
        "tls": transport.ca_cert is not None,
        "mutual_tls": transport.cert is not None,
        "isolation": options.isolation.level,
        "sync": options.sync,
        "dry_run": True,
    }

    def human() -> None:
        how = (
            f"rejoin as node {use.label} with the credential kept in {options.state_dir}"
            if use is not None
            else f"join with the invite from {options.token_source or '?'}"
        )
        security = "mTLS" if plan["mutual_tls"] else "TLS" if plan["tls"] else "plaintext"
        render.message(
            f"would connect to {options.hub} ({security}) and {how}; tasks run in "
            f"{options.workspace} (isolation {plan['isolation']})"
        )
        render.note("dry run: nothing connected or changed")

    render.emit(plan, human=human)


@app.command("sync")
def sync_files(
    ctx: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH", help="Files or folders, relative to the workspace (or absolute)."
        ),
    ],
    hub: HubOpt = None,
    workspace: Annotated[
        Path | None, typer.Option(metavar="DIR", help="The workspace the paths belong to.")
    ] = None,
    state_dir: StateDirOpt = None,
    ca_cert: CaCertOpt = None,
    cert: CertOpt = None,
    key: KeyOpt = None,
    insecure: InsecureOpt = False,
    force: Annotated[
        bool, typer.Option("--force", help="Send every file, even those unchanged since sent.")
    ] = False,
) -> None:
    """Upload files into this node's mirror on the hub once, then exit (1 if any failed).

    PATH is taken inside the workspace wherever you run it. Files unchanged since the last
    `agent sync` (same size and mtime, or same sha256) are skipped. Uses the credential
    and the hub the agent keeps in --state-dir; symlinks are not followed.

    Example: cortexctl agent sync results/report.csv --workspace ~/work
    """
    import asyncio

    from cortexctl.agent.runner import Agent, AgentOptions
    from cortexctl.agent.transport import Transport
    from cortexctl.tuning import tune_malloc

    cli_context(ctx)
    state = (state_dir or default_state_dir()).expanduser()
    hub, workspace = _required(hub, workspace, state)
    transport = Transport(ca_cert=ca_cert, cert=cert, key=key, insecure=insecure)
    transport.check(hub)
    tune_malloc(SYNC_CHUNK_HINT)
    options = AgentOptions(
        hub=hub,
        workspace=workspace.absolute(),
        state_dir=state,
        transport=transport,
    )
    with render.progress("uploading", None, True) as advance:
        report = asyncio.run(Agent(options).sync_paths(paths, on_done=advance, force=force))

    def human() -> None:
        for item in report.uploaded:
            render.message(f"uploaded {item.path} ({item.size} bytes)")
        if report.unchanged:
            render.message(f"{report.unchanged} unchanged file(s) skipped (--force sends them)")

    render.emit(report, human=human)
    if report.failed:
        for failure in report.failed:
            render.error(f"failed {failure.path}: {failure.error}")
        raise CortexError(
            f"{len(report.failed)} of {len(report.failed) + len(report.uploaded)} file(s) "
            "were not uploaded"
        )
