"""`cortexctl context`: named hubs to run every command against, through the admin API.

With a remote context every command but `serve`, `agent` and `db` goes through that hub's
admin API (cortex.admin.v1.AdminService) with the same flags, output and exit codes as on
the hub's host; `local` (the default) is the store, directly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from cortexctl.cli import render
from cortexctl.cli.context import cli_context
from cortexctl.errors import InvalidArgument

app = typer.Typer(
    help="Add, choose, list and remove contexts: hubs to run commands against remotely.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The context's name.")]


def _readable(option: str, value: str | None) -> str | None:
    """The file's absolute path, once it is known to be readable."""
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    try:
        path.read_bytes()
    except OSError as err:
        raise InvalidArgument(f"cannot read {option} {value}: {err.strerror}") from None
    return str(path)


@app.command("add")
def add(
    ctx: typer.Context,
    name: NameArg,
    hub: Annotated[
        str, typer.Option("--hub", metavar="HOST:PORT", help="The hub's address (its node port).")
    ],
    ca_cert: Annotated[
        str | None,
        typer.Option(metavar="FILE", help="The CA that signed the hub's certificate (TLS)."),
    ] = None,
    token_file: Annotated[
        str | None,
        typer.Option(
            metavar="FILE",
            help="A file holding an admin token (`cortexctl admin-tokens create`); the token "
            "is copied into the contexts file (mode 0600), never printed.",
        ),
    ] = None,
    cert: Annotated[
        str | None, typer.Option(metavar="FILE", help="Client certificate, for a hub with mTLS.")
    ] = None,
    key: Annotated[str | None, typer.Option(metavar="FILE", help="Its private key.")] = None,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="Allow plaintext to a hub off loopback (a trusted net)."),
    ] = False,
    use: Annotated[bool, typer.Option("--use", help="Also make it the current context.")] = False,
) -> None:
    """Add a context (or replace the one of that name).

    Example: cortexctl context add prod --hub hub.internal:50051 --ca-cert ca.pem --token-file t
    """
    from cortexctl import contexts
    from cortexctl.addresses import is_loopback, split_address

    contexts.check_name(name)
    host, _ = split_address(hub)
    if token_file is None and cert is None:
        raise InvalidArgument(
            "a context needs a credential: --token-file FILE (an admin token), or "
            "--cert FILE --key FILE"
        )
    if (cert is None) != (key is None):
        raise InvalidArgument("a client certificate needs both --cert and --key")
    if cert is not None and ca_cert is None:
        raise InvalidArgument("--cert/--key need --ca-cert (the CA that signed the hub)")
    if ca_cert is None and not insecure and not is_loopback(host):
        raise InvalidArgument(
            f"refusing to send an admin token in plaintext to non-loopback hub {hub}; pass "
            "--ca-cert FILE for TLS, or --insecure if a trusted network is meant"
        )
    token = ""
    if token_file is not None:
        try:
            token = Path(token_file).expanduser().read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or str(err)
            raise InvalidArgument(f"cannot read --token-file {token_file}: {reason}") from None
        if not token or any(ch.isspace() for ch in token):
            raise InvalidArgument(f"--token-file {token_file} holds no admin token (one line)")
    context = contexts.Context(
        name=name,
        hub=hub,
        ca_cert=_readable("--ca-cert", ca_cert),
        token=token,
        cert=_readable("--cert", cert),
        key=_readable("--key", key),
        insecure=insecure and ca_cert is None,
    )
    file = contexts.load()
    replaced = name in file.contexts
    file.contexts[name] = context
    if use:
        file.current = name
    contexts.save(file)
    view = contexts.ContextView.of(context, file.current == name)

    def human() -> None:
        render.message(f"{'replaced' if replaced else 'added'} context {name} (hub {hub})")
        if not use and file.current != name:
            render.note(f"use it with `cortexctl context use {name}` or `--context {name}`")

    render.emit(view, human=human)


@app.command("use")
def use(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="The context; `local`: the store.")
    ] = None,
    none: Annotated[
        bool, typer.Option("--none", help="No current context: the store here (as `local`).")
    ] = False,
) -> None:
    """Make a context the current one (every command then goes through its hub).

    Example: cortexctl context use prod
    """
    from cortexctl import contexts

    if (name is None) == (not none):
        raise InvalidArgument("name a context, or give --none for the store here")
    file = contexts.load()
    target = None if none or name == contexts.LOCAL else name
    if target is not None and target not in file.contexts:
        raise contexts.unknown(target, file)
    file.current = target
    contexts.save(file)
    shown = target or contexts.LOCAL
    view = contexts.ContextView.of(file.contexts.get(target) if target else None, True)
    render.emit(
        view,
        human=lambda: render.message(
            f"using context {shown}" + ("" if target else " (the store here)")
        ),
    )


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List contexts; the current one is marked with *.

    Example: cortexctl context list -o json
    """
    from cortexctl import contexts

    file = contexts.load()
    current = contexts.selected_name(cli_context(ctx).context_name, file, os.environ)
    views = [contexts.ContextView.of(None, current == contexts.LOCAL)] + [
        contexts.ContextView.of(c, current == c.name) for _, c in sorted(file.contexts.items())
    ]
    render.emit(
        views,
        human=lambda: render.print_table(
            ["CURRENT", "NAME", "HUB", "TLS", "CREDENTIAL"],
            [
                (
                    "*" if v.in_use else "",
                    v.name,
                    v.hub or "-",
                    "yes" if v.tls else "no" if v.hub else "-",
                    v.credential,
                )
                for v in views
            ],
        ),
    )


@app.command("rm")
def rm(ctx: typer.Context, name: NameArg) -> None:
    """Remove a context (the current one too: then the store here is used).

    Example: cortexctl context rm staging
    """
    from cortexctl import contexts

    file = contexts.load()
    if name not in file.contexts:
        raise contexts.unknown(name, file)
    del file.contexts[name]
    was_current = file.current == name
    if was_current:
        file.current = None
    contexts.save(file)

    def human() -> None:
        render.message(f"removed context {name}")
        if was_current:
            render.note("it was the current context; commands now use the store here")

    render.emit({"name": name, "in_use": was_current}, human=human)


@app.command("show")
def show(ctx: typer.Context) -> None:
    """Show the context in use and what chose it (--context, CORTEX_CONTEXT, the file).

    Example: cortexctl context show
    """
    from cortexctl import contexts

    explicit = cli_context(ctx).context_name
    file = contexts.load()
    name = contexts.selected_name(explicit, file, os.environ)
    chosen = contexts.chosen_by(explicit, file, os.environ)
    if name != contexts.LOCAL and name not in file.contexts:
        raise contexts.unknown(name, file)
    view = contexts.ContextView.of(file.contexts.get(name), True, chosen)
    render.emit(
        view,
        human=lambda: render.print_fields(
            [
                ("context", view.name),
                ("chosen by", view.chosen_by),
                ("hub", view.hub or "- (the store here: see `cortexctl config show`)"),
                ("tls", ("yes, CA " + (view.ca_cert or "")) if view.tls else "no"),
                ("client certificate", view.client_cert or ""),
                ("credential", view.credential),
                ("contexts file", str(file.path)),
            ]
        ),
    )
