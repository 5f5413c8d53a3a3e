"""`cortexctl agent`: the reference node agent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cortexctl.cli.context import cli_context
from cortexctl.cli.options import parse_labels
from cortexctl.errors import UsageError


def default_state_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_dir("cortexctl")) / "agent"


def agent(
    ctx: typer.Context,
    hub: Annotated[
        str,
        typer.Option(
            metavar="HOST:PORT", envvar="CORTEX_HUB", help="The hub to join [env CORTEX_HUB]."
        ),
    ],
    workspace: Annotated[
        Path, typer.Option(metavar="DIR", help="Directory tasks run in (and files sync from).")
    ],
    token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN",
            envvar="CORTEX_INVITE_TOKEN",
            help="Invite token for the first join [env CORTEX_INVITE_TOKEN].",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Where the node credential is kept (mode 0600)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Requested node name (default: hostname).")
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", metavar="KEY=VALUE", help="Node label (repeatable)."),
    ] = None,
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
    import asyncio

    from cortexctl.agent.runner import Agent, AgentOptions
    from cortexctl.logs import setup_logging

    cli_context(ctx)  # agents need no store; only validate shared options
    if not workspace.is_dir():
        raise UsageError(f"workspace {workspace} is not a directory; create it first")
    setup_logging(log_level, log_format)
    options = AgentOptions(
        hub=hub,
        workspace=workspace.resolve(),
        state_dir=(state_dir or default_state_dir()).expanduser(),
        token=token or "",
        name=name or "",
        labels=parse_labels(label),
    )
    asyncio.run(Agent(options).run())
