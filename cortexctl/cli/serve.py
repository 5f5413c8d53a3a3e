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
            help="Address to listen on [default 127.0.0.1:50051; env "
            "CORTEX_LISTEN]; port 0 picks a free one.",
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
    status_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="Keep a JSON snapshot of the mesh here, rewritten atomically."
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="PEM certificate (chain) of the hub; enables TLS."),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(metavar="FILE", help="PEM private key of --tls-cert.")
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="PEM CA bundle: require client certificates signed by it (mTLS)."
        ),
    ] = None,
    metrics_listen: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="Serve Prometheus metrics here [env CORTEX_METRICS_LISTEN; off by default].",
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow plaintext on a non-loopback address.")
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option(metavar="LEVEL", help="debug, info, warning or error [env CORTEX_LOG_LEVEL]."),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(metavar="FORMAT", help="auto, text or json [env CORTEX_LOG_FORMAT]."),
    ] = None,
) -> None:
    """Run the hub: gRPC for nodes and the maintenance scheduler, on the configured store.

    The store's schema is created or upgraded first. SIGTERM or Ctrl-C drain and stop it:
    health turns NOT_SERVING, streams close with UNAVAILABLE, tasks in flight are failed.

    Example: cortexctl serve --listen 0.0.0.0:50051 --tls-cert hub.pem --tls-key hub.key
    """
    obj = cli_context(ctx)
    obj.flags.update(
        {
            "hub.listen": listen,
            "hub.heartbeat_interval": heartbeat_interval,
            "metrics.listen": metrics_listen,
            "log.level": log_level,
            "log.format": log_format,
        }
    )
    settings = obj.settings
    from cortexctl.hub.server import ServeOptions, TlsFiles
    from cortexctl.hub.server import serve as run_server
    from cortexctl.logs import setup_logging

    setup_logging(settings["log.level"], settings["log.format"])
    run_server(
        settings,
        ServeOptions(
            listen=settings["hub.listen"],
            ready_file=ready_file,
            status_file=status_file,
            status_interval_s=settings["jobs.status_file_interval"],
            tls=TlsFiles.from_options(tls_cert, tls_key, tls_client_ca),
            metrics_listen=settings["metrics.listen"],
            insecure=insecure,
        ),
    )
