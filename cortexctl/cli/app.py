"""The root of the command tree: global options, sub-command groups, errors -> exit codes.

Every typed error exits with its own code (the table is ``cortexctl.errors.EXIT_CODES``).
Global options (``-o``, ``--json``, ``-q``, ``--data-dir``, ``--database-url``,
``--config``) are accepted before or after the sub-command. Every error is one line on
stderr (a JSON object with a machine output format).
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from typer._click import exceptions as click_exceptions
from typer.core import TyperGroup

from cortexctl import __version__
from cortexctl.cli import coercion, completion, render
from cortexctl.cli.context import CliContext, cli_context
from cortexctl.cli.options import env_help
from cortexctl.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, CortexError


@dataclass(frozen=True)
class Entry:
    """One command or group under the root, loaded only when it is used."""

    module: str  # the module under cortexctl.cli that defines it
    attr: str  # a typer.Typer (a group) or a command function
    help: str  # the first paragraph of its help: root --help and completion show it


# The root's commands and groups, in the order --help lists them. A module here is imported
# only when its command runs (or a tool walks the whole tree): root --help and completing a
# command name read this table. To add a group: define `app = typer.Typer(...)` in
# cortexctl/cli/<module>.py and add a line here; tests/cli/test_startup.py checks the help
# line against the group's own.
COMMANDS: dict[str, Entry] = {
    "serve": Entry(
        "serve",
        "serve",
        "Run the hub: gRPC for nodes and the maintenance scheduler, on the configured store.",
    ),
    "completion": Entry(
        "completion",
        "completion",
        "Print the completion script for a shell (the same as the files in completions/).",
    ),
    "bench": Entry(
        "bench",
        "bench",
        "Measure a throwaway hub under load; with --baseline, a bare gRPC server beside it.",
    ),
    "agent": Entry(
        "agent",
        "app",
        "Run a node agent: join the hub, keep the stream open, run tasks under its sandbox.",
    ),
    "invites": Entry("invites", "app", "Create, list and revoke invites that let nodes join."),
    "nodes": Entry(
        "nodes",
        "app",
        "List and inspect nodes, set their sandbox and quota, cordon, drain, rename, revoke "
        "and delete them.",
    ),
    "tasks": Entry(
        "tasks", "app", "Submit tasks to nodes, list, show, follow, wait for and cancel them."
    ),
    "journal": Entry("journal", "app", "Repair the task journal."),
    "mesh": Entry(
        "mesh", "app", "See the whole mesh: nodes, hubs, tasks, uploads, maintenance jobs."
    ),
    "hubs": Entry("hubs", "app", "List the hubs that serve this store."),
    "gc": Entry(
        "gc", "app", "Remove stale upload leases, old mirrors, spent invites and old tasks."
    ),
    "mirrors": Entry(
        "mirrors", "app", "Look at and remove the files nodes have synced to the hub."
    ),
    "admin-tokens": Entry(
        "admin_tokens",
        "app",
        "Create, list and revoke admin API tokens (roles: viewer, operator, admin).",
    ),
    "audit": Entry("audit", "app", "Read the audit log of operator changes and node joins."),
    "db": Entry("db", "app", "Create and upgrade the store's schema; back up a SQLite store."),
    "config": Entry("config_cmd", "app", "Show the effective settings and edit the config file."),
    "context": Entry(
        "context_cmd",
        "app",
        "Add, choose, list and remove contexts: hubs to run commands against remotely.",
    ),
}

GLOBAL_EPILOG = (
    "Global options, before or after the command: -o, --output table|wide|json|jsonl|yaml; "
    "--json; -q, --quiet; --context NAME; --data-dir DIR; --database-url URL; --config FILE "
    "(see cortexctl --help)."
)


class LazyCommands(MutableMapping[str, Any]):
    """The root's ``commands``: every name in COMMANDS, each built on first access.

    Names, ``in`` and ``len`` never import anything; ``[name]``, ``get`` and ``items``
    build what they return (so tools that walk the whole tree still see every command).
    """

    def __init__(self, loaded: dict[str, Any]) -> None:
        self._names = list(COMMANDS)
        self._loaded = dict(loaded)
        self._names.extend(name for name in loaded if name not in COMMANDS)

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self._loaded[name] = load_command(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        if name not in self._names:
            self._names.append(name)
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._names.remove(name)
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names


def load_command(name: str) -> Any:
    """Build the click command of one COMMANDS entry, polished like the rest of the tree."""
    from typer.main import get_command_from_info, get_group_from_info
    from typer.models import TyperInfo

    entry = COMMANDS[name]
    target = getattr(importlib.import_module(f"cortexctl.cli.{entry.module}"), entry.attr)
    command: Any
    if isinstance(target, typer.Typer):
        command = get_group_from_info(
            TyperInfo(target, name=name),
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=app.rich_markup_mode,
            suggest_commands=app.suggest_commands,
        )
    else:
        single = typer.Typer()
        single.command(name)(target)
        command = get_command_from_info(
            single.registered_commands[0],
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=app.rich_markup_mode,
        )
    if not command.epilog:
        command.epilog = GLOBAL_EPILOG
    polish_tree(command)
    coercion.install(command)
    return command


class CortexGroup(TyperGroup):
    """The root: maps every typed error raised below to one line on stderr and its exit
    code, and loads a command group only when it is used (see COMMANDS)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: Any = LazyCommands(self.commands)
        coercion.install(self, below=False)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def _short_help(self, name: str, limit: int) -> str:
        from typer._click.utils import make_default_short_help

        loaded = self.commands._loaded.get(name)
        if loaded is not None or name not in COMMANDS:
            return str(self.commands[name].get_short_help_str(limit))
        return make_default_short_help(COMMANDS[name].help, limit).strip()

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        # click's own layout, from the table instead of importing every group.
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, self._short_help(name, limit)) for name in names]
        from gettext import gettext

        with formatter.section(gettext("Commands")):
            formatter.write_dl(rows)

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        from typer._click.shell_completion import CompletionItem

        results = [
            CompletionItem(name, help=self._short_help(name, 45))
            for name in self.list_commands(ctx)
            if name.startswith(incomplete)
        ]
        results.extend(super(TyperGroup, self).shell_complete(ctx, incomplete))
        return results

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if os.environ.get(completion.COMPLETE_VAR):
            # A shell asking for completions: the scripts in completions/ need typer's shell
            # classes, which typer registers only for apps with its own completion options.
            completion.enable_shell_completion()
        render.configure(None)
        for param in self.params:
            _word_metavar(param)
        try:
            result = super().main(
                args=sys.argv[1:] if args is None else list(args),
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
            code = result if isinstance(result, int) else 0
        except click_exceptions.NoArgsIsHelpError as err:
            err.show()
            code = err.exit_code
        except click_exceptions.UsageError as err:
            code = _usage_error(err)
        except click_exceptions.ClickException as err:
            render.print_error(_redact(err.format_message()), err.exit_code)
            code = err.exit_code
        except typer.Abort:
            render.print_error("aborted", EXIT_FAILED)
            code = EXIT_FAILED
        except CortexError as err:  # raised while options were parsed (e.g. --version)
            render.print_error(_redact(str(err)), err.exit_code)
            code = err.exit_code
        if standalone_mode:
            sys.exit(code)
        return code

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if ctx.parent is None:
            from cortexctl.cli.globals import hoist

            hoisted = hoist(self, ctx, args)
            render.configure(hoisted.output, hoisted.quiet)
            args = hoisted.args
            ctx.meta["cortex.raw_args"] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:  # typer's own click Context
        try:
            return super().invoke(ctx)
        except CortexError as err:
            _fail(ctx, str(err), err.exit_code)
        except KeyboardInterrupt:
            _fail(ctx, "interrupted", EXIT_INTERRUPTED)
        except Exception as err:
            if "sqlalchemy" not in sys.modules:  # a store error needs the store loaded
                raise
            from cortexctl.store.engine import store_error

            obj = ctx.obj
            url = obj.store_url if isinstance(obj, CliContext) else None
            mapped = store_error(err, url)
            if mapped is None:
                raise
            _fail(ctx, str(mapped), mapped.exit_code)
        finally:
            obj = ctx.obj
            if isinstance(obj, CliContext):
                obj.close()


def _redact(message: str) -> str:
    from cortexctl.logs import redact_text

    return redact_text(message)


def _fail(ctx: Any, message: str, code: int) -> None:
    render.print_error(_redact(message), code)
    ctx.exit(code)


def _usage_error(err: Any) -> int:
    """click's four-line usage block as one line, with where to look for help."""
    text = err.format_message().strip().replace("\n", " ")
    text = text[:1].lower() + text[1:]
    ctx = err.ctx
    hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
    render.print_error(_redact(text) + hint, EXIT_USAGE)
    return EXIT_USAGE


def polish_tree(root: Any) -> None:
    """Help that reads as words: the global options at the end of every command's help,
    and metavars (``NODE``, ``DURATION``, ``N``), never Python types (``<str>``)."""
    stack = [root]
    while stack:
        command = stack.pop()
        for param in command.params:
            _word_metavar(param)
        for sub in getattr(command, "commands", {}).values():
            if not sub.epilog:
                sub.epilog = GLOBAL_EPILOG
            stack.append(sub)


def _usage_word(param: Any) -> str:
    """An argument in a usage line as a word: ``NODE``, ``[NODE]``, ``ID...``, ``[PATH...]``."""
    word = re.sub(r"[\[\]{}]|\.\.\.", "", param.metavar or param.name.upper())
    if param.nargs != 1:
        word += "..."
    return word if param.required else f"[{word}]"


def _no_type(ctx: Any = None) -> None:
    return None


def _word_metavar(param: Any) -> None:
    if param.param_type_name == "argument":
        if param.metavar is None:
            param.metavar = param.name.upper()
        # typer prints "NODE <str>" for an argument even with a metavar.
        param.display_type_rich = _no_type
        # ... and "{NODE}", "[[PATH]...]..." or "{TOKEN...}..." in usage lines.
        param._usage_display_name = functools.partial(_usage_word, param)
    elif param.param_type_name == "option" and param.metavar is None and not param.is_flag:
        desc = getattr(param, "type_descriptor", None)
        choices = getattr(desc, "choices", None) if getattr(desc, "is_choice", False) else None
        annotation = getattr(desc, "annotation", None)
        if choices:
            param.metavar = "|".join(str(getattr(c, "value", c)) for c in choices)
        elif annotation is int or getattr(param, "type", None) is int:
            param.metavar = "N"
        else:
            param.metavar = param.name.upper()


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


def _version(ctx: typer.Context, value: bool) -> None:
    if not value:
        return
    if render.machine():
        from cortexctl.core.views import version_view

        obj = cli_context(ctx)
        obj.config_path, flags = _global_flags(ctx.meta.get("cortex.raw_args", ()))
        obj.flags.update(flags)
        settings = obj.settings
        render.emit(version_view(__version__, settings), human=lambda: None)
    else:
        typer.echo(f"cortexctl {__version__}")
    raise typer.Exit()


def _global_flags(args: Sequence[str]) -> tuple[str | None, dict[str, Any]]:
    """--config and the store flags from the (hoisted) line, for eager --version."""
    config: str | None = None
    flags: dict[str, Any] = {}
    names = {"--data-dir": "store.data_dir", "--database-url": "store.database_url"}
    tokens = list(args)
    for index, token in enumerate(tokens[:-1]):
        if token == "--":
            break
        if token == "--config":
            config = tokens[index + 1]
        elif token in names:
            flags[names[token]] = tokens[index + 1]
    return config, flags


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            metavar="FILE",
            envvar="CORTEX_CONFIG",
            show_envvar=False,
            help=env_help(
                "Your config file (default: config.toml in the user config dir); "
                "/etc/cortexctl/config.toml is merged below it.",
                "CORTEX_CONFIG",
            ),
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            metavar="NAME",
            help=env_help(
                "Run through this context's hub (admin API); `local`: the store here "
                "(see `cortexctl context --help`).",
                "CORTEX_CONTEXT",
            ),
        ),
    ] = None,
    data_dir: Annotated[
        str | None,
        typer.Option(
            "--data-dir",
            metavar="DIR",
            help=env_help("Data directory of the store and mirrors.", "CORTEX_DATA_DIR"),
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            metavar="URL",
            help=env_help(
                "Store URL, e.g. postgresql+psycopg://user@host/db.", "CORTEX_DATABASE_URL"
            ),
        ),
    ] = None,
    output: Annotated[
        render.OutputFormat | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FORMAT",
            help="Output format: table, wide, json, jsonl or yaml (before or after the command).",
            case_sensitive=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The same as -o json.")] = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="Print nothing on success; errors still go to stderr."),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the version and exit (with -o json: the output schema and the store).",
        ),
    ] = False,
) -> None:
    """Operate a Cortex AI-agent mesh: the hub, its nodes, their tasks and files."""
    obj = cli_context(ctx)
    obj.config_path = config
    obj.context_name = context
    obj.flags.update({"store.data_dir": data_dir, "store.database_url": database_url})


def main() -> None:
    # gRPC core logs every failed TLS handshake (`I1202 … ssl_transport_security.cc …`)
    # before the one-line hint says what to do; its errors still show. Set before grpc
    # is imported (no command imports it before this); GRPC_VERBOSITY=INFO brings it back.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.exit(app(prog_name="cortexctl"))
