"""`cortexctl serve`: run the hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cortexctl.cli.context import cli_context


def serve(
    ctx: typer.Context,
    listen: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="Address to listen on [default 127.0.0.1:50051; "
            "env CORTEX_LISTEN]; port 0 picks a free one.",
        ),
    ] = None,
    heartbeat_interval: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION", help="Heartbeat interval announced to nodes [default 5s]."
        ),
    ] = None,
    ready_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="Write {address, hub_id, pid} as JSON here once serving."
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow plaintext on a non-loopback address.")
    ] = False,
    log_level: Annotated[
        str | None, typer.Option(metavar="LEVEL", help="debug, info, warning or error.")
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(metavar="FORMAT", help="auto, text or json.")
    ] = None,
) -> None:
    """Run the hub: gRPC for nodes, the maintenance scheduler, on the configured store.

    The store's schema is created or upgraded first. SIGTERM or Ctrl-C drain and stop it.

    Example: cortexctl serve --listen 127.0.0.1:50051
    """
    obj = cli_context(ctx)
    obj.flags.update(
        {
            "hub.listen": listen,
            "hub.heartbeat_interval": heartbeat_interval,
            "log.level": log_level,
            "log.format": log_format,
        }
    )
    settings = obj.settings
    from cortexctl.hub.server import ServeOptions
    from cortexctl.hub.server import serve as run_server
    from cortexctl.logs import setup_logging

    setup_logging(settings["log.level"], settings["log.format"])
    run_server(
        settings,
        ServeOptions(listen=settings["hub.listen"], ready_file=ready_file, insecure=insecure),
    )
