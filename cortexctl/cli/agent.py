"""`cortexctl agent`: the reference node agent, and `agent sync` for one-off uploads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import JsonOpt, parse_labels
from cortexctl.errors import CortexError, UsageError

app = typer.Typer()

HubOpt = Annotated[
    str | None,
    typer.Option(
        metavar="HOST:PORT", envvar="CORTEX_HUB", help="The hub to join [env CORTEX_HUB]."
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


def default_state_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_dir("cortexctl")) / "agent"


def _required(hub: str | None, workspace: Path | None) -> tuple[str, Path]:
    if not hub:
        raise UsageError("missing --hub HOST:PORT (or env CORTEX_HUB): the hub to join")
    if workspace is None:
        raise UsageError("missing --workspace DIR: the directory tasks run in")
    if not workspace.is_dir():
        raise UsageError(f"workspace {workspace} is not a directory; create it first")
    return hub, workspace


@app.callback(invoke_without_command=True)
def agent(
    ctx: typer.Context,
    hub: HubOpt = None,
    workspace: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Directory tasks run in (and files sync from)."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN",
            envvar="CORTEX_INVITE_TOKEN",
            help="Invite token for the first join [env CORTEX_INVITE_TOKEN].",
        ),
    ] = None,
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
    log_level: Annotated[
        str, typer.Option(metavar="LEVEL", help="debug, info, warning, error.")
    ] = "info",
    log_format: Annotated[str, typer.Option(metavar="FORMAT", help="auto, text or json.")] = "auto",
) -> None:
    """Run a node agent: join the hub, keep the stream open, run tasks under its sandbox.

    The first run needs --token; the credential it gets is kept in --state-dir so later
    runs need none. It reconnects with backoff until stopped (SIGTERM or Ctrl-C).

    Example: cortexctl agent --hub 127.0.0.1:50051 --token cortex-invite.... --workspace ~/work
    """
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    from cortexctl.agent.runner import Agent, AgentOptions
    from cortexctl.agent.transport import Transport
    from cortexctl.logs import setup_logging
    from cortexctl.units import parse_duration

    cli_context(ctx)  # agents need no store; only validate shared options
    hub, workspace = _required(hub, workspace)
    transport = Transport(ca_cert=ca_cert, cert=cert, key=key, insecure=insecure)
    transport.check(hub)
    interval_s = parse_duration(sync_interval, what="--sync-interval")
    if interval_s <= 0:
        raise UsageError("bad --sync-interval: give a positive duration, e.g. 10s")
    setup_logging(log_level, log_format)
    if sync:
        from cortexctl.core.mirrors import tune_malloc

        tune_malloc(SYNC_CHUNK_HINT)
    options = AgentOptions(
        hub=hub,
        workspace=workspace.resolve(),
        state_dir=(state_dir or default_state_dir()).expanduser(),
        token=token or "",
        name=name or "",
        labels=parse_labels(label),
        sync=sync,
        sync_interval_s=interval_s,
        transport=transport,
    )
    asyncio.run(Agent(options).run())


@app.command("sync")
def sync_files(
    ctx: typer.Context,
    paths: Annotated[
        list[str],
        typer.Argument(metavar="PATH", help="Files (or folders) inside the workspace."),
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
    as_json: JsonOpt = False,
) -> None:
    """Upload files into this node's mirror on the hub once, then exit (1 if any failed).

    Uses the credential the agent keeps in --state-dir; symlinks are not followed.

    Example: cortexctl agent sync results/report.csv --hub 127.0.0.1:50051 --workspace ~/work
    """
    import asyncio

    from cortexctl.agent.runner import Agent, AgentOptions
    from cortexctl.agent.transport import Transport
    from cortexctl.core.mirrors import tune_malloc

    cli_context(ctx)
    hub, workspace = _required(hub, workspace)
    transport = Transport(ca_cert=ca_cert, cert=cert, key=key, insecure=insecure)
    transport.check(hub)
    tune_malloc(SYNC_CHUNK_HINT)
    options = AgentOptions(
        hub=hub,
        workspace=workspace.absolute(),
        state_dir=(state_dir or default_state_dir()).expanduser(),
        transport=transport,
    )
    with render.progress("uploading", None, not as_json) as advance:
        report = asyncio.run(Agent(options).sync_paths(paths, on_done=advance))

    def human() -> None:
        for item in report.uploaded:
            render.message(f"uploaded {item.path} ({item.size} bytes)")

    render.emit(report, as_json=as_json, human=human)
    if report.failed:
        for failure in report.failed:
            render.error(f"failed {failure.path}: {failure.error}")
        raise CortexError(
            f"{len(report.failed)} of {len(report.failed) + len(report.uploaded)} file(s) "
            "were not uploaded"
        )
