"""`cortexctl serve`: run the hub."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.context import cli_context
from cortexctl.cli.options import env_help
from cortexctl.errors import InvalidArgument

if TYPE_CHECKING:
    from cortexctl.config import Settings


def serve(
    ctx: typer.Context,
    listen: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help=env_help(
                "Address to listen on [default: 127.0.0.1:50051]; port 0 picks a free one.",
                "CORTEX_LISTEN",
            ),
        ),
    ] = None,
    heartbeat_interval: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION", help="Heartbeat interval announced to nodes [default: 5s]."
        ),
    ] = None,
    lost_node_grace: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="How long a node whose stream ended may take to come back before its "
            "dispatched and running tasks are failed [default two heartbeat intervals].",
        ),
    ] = None,
    drain_timeout: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="On SIGTERM, how long running tasks may finish before they are failed "
            "[default 10s].",
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
            help=env_help(
                "Serve Prometheus metrics here (off by default).", "CORTEX_METRICS_LISTEN"
            ),
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow plaintext on a non-loopback address.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check the settings, TLS files and store location, print what would be "
            "served, and exit (creates nothing).",
        ),
    ] = False,
    processes: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=1,
            help="Run N hub processes sharing the port (SO_REUSEPORT), each a member with "
            "its own hub id; PostgreSQL only. Status files and metrics ports get the "
            "process number as suffix / offset.",
        ),
    ] = 1,
    log_level: Annotated[
        str | None,
        typer.Option(
            metavar="LEVEL", help=env_help("debug, info, warning or error.", "CORTEX_LOG_LEVEL")
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(metavar="FORMAT", help=env_help("auto, text or json.", "CORTEX_LOG_FORMAT")),
    ] = None,
) -> None:
    """Run the hub: gRPC for nodes and the maintenance scheduler, on the configured store.

    The store's schema is created or upgraded first (under an advisory lock on PostgreSQL,
    so several hubs may start at once; SQLite takes one hub and refuses a second). SIGTERM
    or Ctrl-C drain and stop it: health turns NOT_SERVING, no new work is sent, running
    tasks get --drain-timeout to finish and are failed after it, pending tasks stay pending,
    streams close UNAVAILABLE. With --processes N the parent forwards SIGTERM to each.

    The store is the one `cortexctl config show` names (under systemd: /var/lib/cortexctl,
    set in /etc/cortexctl/config.toml); serve is what creates it on a fresh machine.

    Example: cortexctl serve --listen 0.0.0.0:50051 --tls-cert hub.pem --tls-key hub.key
    """
    obj = cli_context(ctx)
    obj.flags.update(
        {
            "hub.listen": listen,
            "hub.heartbeat_interval": heartbeat_interval,
            "hub.lost_node_grace": lost_node_grace,
            "hub.drain_timeout": drain_timeout,
            "metrics.listen": metrics_listen,
            "log.level": log_level,
            "log.format": log_format,
        }
    )
    settings = obj.settings
    _check_cert_roles(settings, tls_client_ca)
    if dry_run:
        _dry_run(settings, tls_cert, tls_key, tls_client_ca, insecure)
        return
    from cortexctl.addresses import check_transport
    from cortexctl.hub.server import ServeOptions
    from cortexctl.hub.server import serve as run_server
    from cortexctl.hub.tls import TlsFiles
    from cortexctl.logs import setup_logging

    tls = TlsFiles.from_options(tls_cert, tls_key, tls_client_ca)  # bad options: no log first
    check_transport(settings.hub.listen, insecure=insecure, tls=tls is not None)
    setup_logging(settings.log.level, settings.log.format)
    import logging

    choice = settings.store_choice()
    logging.getLogger("cortexctl.hub").info(
        "store %s (%s)", choice.path or choice.url, choice.reason
    )
    if processes > 1:
        from cortexctl.hub.processes import supervise

        run_server = supervise  # the parent supervises; each child runs `serve` itself
    run_server(
        settings,
        ServeOptions(
            listen=settings.hub.listen,
            ready_file=ready_file,
            status_file=status_file,
            status_interval_s=settings.jobs.status_file_interval,
            tls=tls,
            metrics_listen=settings.metrics.listen,
            insecure=insecure,
            processes=processes,
        ),
    )


def _check_cert_roles(settings: Settings, tls_client_ca: Path | None) -> None:
    if settings.hub.admin_cert_roles and tls_client_ca is None:
        raise InvalidArgument(
            "hub.admin_cert_roles gives client certificates admin roles, but without "
            "--tls-client-ca the hub verifies no client certificate: add --tls-client-ca "
            "CA.pem, or remove hub.admin_cert_roles"
        )


def _dry_run(
    settings: Settings,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    insecure: bool,
) -> None:
    """What `serve` would do, checked as far as can be without binding or writing."""
    from cortexctl.addresses import check_transport
    from cortexctl.core.views import ServePlan

    if (tls_cert is None) != (tls_key is None):
        raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
    for path in (tls_cert, tls_key, tls_client_ca):
        if path is not None and not os.access(path, os.R_OK):
            raise InvalidArgument(f"cannot read {path}: no such file or not readable")
    listen = settings["hub.listen"]
    check_transport(listen, insecure=insecure, tls=tls_cert is not None)
    plan = ServePlan(
        listen=listen,
        tls=tls_cert is not None,
        mutual_tls=tls_client_ca is not None,
        metrics_listen=settings["metrics.listen"],
        store=settings.store_choice(),
    )

    def human() -> None:
        render.message(f"would serve on {listen} ({'TLS' if plan.tls else 'plaintext'})")
        render.message(f"store: {plan.store.path or plan.store.url} — {plan.store.reason}")

    render.emit(plan, human=human)
