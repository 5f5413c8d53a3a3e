"""The root of the command tree: global options, sub-command groups, errors -> exit codes.

Exit codes: 0 ok, 1 failed, 2 usage, 3 not found, 4 unavailable, 5 conflict.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from cortexctl import __version__
from cortexctl.cli import (
    agent,
    bench,
    completion,
    config_cmd,
    db,
    gc,
    invites,
    journal,
    mesh,
    mirrors,
    nodes,
    serve,
    tasks,
)
from cortexctl.cli.context import CliContext, cli_context
from cortexctl.errors import EXIT_UNAVAILABLE, CortexError


class CortexGroup(TyperGroup):
    """Maps every typed error raised below to one line on stderr and its exit code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if os.environ.get(completion.COMPLETE_VAR):
            # A shell asking for completions: the scripts in completions/ need typer's shell
            # classes, which typer registers only for apps with its own completion options.
            completion.enable_shell_completion()
        return super().main(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:  # typer's own click Context
        try:
            return super().invoke(ctx)
        except CortexError as err:
            _fail(ctx, str(err), err.exit_code)
        except KeyboardInterrupt:
            _fail(ctx, "interrupted", 130)
        except Exception as err:
            if "sqlalchemy" not in sys.modules:  # a store error needs the store loaded
                raise
            from sqlalchemy import exc

            if isinstance(err, exc.OperationalError | exc.InterfaceError):
                _fail(
                    ctx,
                    f"the store is unavailable: {str(err.orig or err).strip()}",
                    EXIT_UNAVAILABLE,
                )
            raise
        finally:
            obj = ctx.obj
            if isinstance(obj, CliContext):
                obj.close()


def _fail(ctx: Any, message: str, code: int) -> None:
    from cortexctl.logs import redact_text

    typer.echo(f"error: {redact_text(message)}", err=True)
    ctx.exit(code)


app = typer.Typer(
    name="cortexctl",
    cls=CortexGroup,
    help="Operate a Cortex AI-agent mesh: the hub, its nodes, their tasks and files.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cortexctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            metavar="FILE",
            envvar="CORTEX_CONFIG",
            help="Config file (default: the user config dir, then /etc/cortexctl).",
        ),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option("--data-dir", metavar="DIR", help="Data directory [env CORTEX_DATA_DIR]."),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            metavar="URL",
            help="Store URL, e.g. postgresql+psycopg://user@host/db [env CORTEX_DATABASE_URL].",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Operate a Cortex AI-agent mesh: the hub, its nodes, their tasks and files."""
    obj = cli_context(ctx)
    obj.config_path = config
    obj.flags.update({"store.data_dir": data_dir, "store.database_url": database_url})


app.command("serve")(serve.serve)
app.add_typer(agent.app, name="agent")
app.add_typer(invites.app, name="invites")
app.add_typer(nodes.app, name="nodes")
app.add_typer(tasks.app, name="tasks")
app.add_typer(journal.app, name="journal")
app.add_typer(mesh.app, name="mesh")
app.add_typer(gc.app, name="gc")
app.add_typer(mirrors.app, name="mirrors")
app.add_typer(db.app, name="db")
app.add_typer(config_cmd.app, name="config")
app.command("completion")(completion.completion)
app.command("bench")(bench.bench)


def main() -> None:
    sys.exit(app(prog_name="cortexctl"))
