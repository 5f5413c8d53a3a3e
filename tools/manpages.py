"""Man pages from the CLI's own help: man/cortexctl.1 and one page per command and group.

Dev tooling (tools/regen.py man): it needs click-man, from the test extra, so it lives in
the checkout and not in the package.

click-man lays out each page (title, NAME, SYNOPSIS, DESCRIPTION, OPTIONS). Its own
walker cannot be used: it builds click contexts and keeps only ``click.Option``
parameters, while typer runs on its own copy of click, so the pages would have no options.
The walk is therefore here, and so are what click-man lacks: EXAMPLES (the ``Example:``
lines of the docstrings), EXIT STATUS, COMMANDS with correct page names, SEE ALSO, and
escaping so groff reads help text as text. Pages carry no date or version, so they only
change when the help does.
"""

from __future__ import annotations

import re
from typing import Any

from cortexctl.errors import COMMAND_EXITS, EXIT_CODES

PROG_NAME = "cortexctl"
HELP_WIDTH = 80  # help is laid out by groff, but pin what click might measure
_EXAMPLE = re.compile(r"^\s*Example:\s*(?P<command>.+?)\s*$")


def man_pages() -> list[tuple[str, str]]:
    """(file name, roff text) of the page of every visible command and group."""
    from typer.main import get_command

    from cortexctl.cli.app import app, polish_tree

    pages: list[tuple[str, str]] = []
    root = get_command(app)
    polish_tree(root)
    _walk(root, PROG_NAME, None, pages)
    return pages


def _walk(command: Any, name: str, parent: Any, pages: list[tuple[str, str]]) -> None:
    import typer

    ctx = typer.Context(
        command,
        info_name=name,
        parent=parent,
        terminal_width=HELP_WIDTH,
        max_content_width=HELP_WIDTH,
        **command.context_settings,
    )
    pages.append((_page_name(ctx) + ".1", _render(ctx)))
    for sub_name, sub in _subcommands(ctx):
        _walk(sub, sub_name, ctx, pages)


def _subcommands(ctx: Any) -> list[tuple[str, Any]]:
    command = ctx.command
    if not hasattr(command, "list_commands"):
        return []
    found = [(name, command.get_command(ctx, name)) for name in command.list_commands(ctx)]
    return [(name, sub) for name, sub in found if sub is not None and not sub.hidden]


def _page_name(ctx: Any) -> str:
    return str(ctx.command_path).replace(" ", "-")


def _render(ctx: Any) -> str:
    from click_man.man import ManPage  # type: ignore[import-untyped]

    command = ctx.command
    description, examples = split_examples(command.help or "")
    page = ManPage(ctx.command_path)
    page.date = ""
    page.short_help = _roff(summary(command))
    page.synopsis = _roff_backslashes(" ".join(command.collect_usage_pieces(ctx)))
    page.description = _roff(description)
    page.options = [
        (_roff_backslashes(record[0]), _roff(" ".join(record[1].split())))
        for param in command.get_params(ctx)
        if not getattr(param, "hidden", False)
        and (record := param.get_help_record(ctx)) is not None
    ]
    text = str(page)
    # click-man titles a page "CORTEXCTL NODES" with today's date; man(1) expects the
    # page's own name, and a date would make every regeneration a change.
    title = _page_name(ctx).upper()
    text = text.split("\n", 1)[1]
    sections = [
        f'.TH "{title}" "1" "" "{PROG_NAME}" "{PROG_NAME} Manual"\n' + text.rstrip("\n"),
        _commands_section(ctx),
        _examples_section(ctx, examples),
        _exit_status_section(ctx),
        _environment_section() if ctx.parent is None else "",
        _files_section() if ctx.parent is None else "",
        _see_also_section(ctx),
    ]
    return "\n".join(section for section in sections if section) + "\n"


def summary(command: Any) -> str:
    """The first paragraph of the help, as one line."""
    if command.short_help:
        return str(command.short_help)
    first = (command.help or "").strip().split("\n\n", 1)[0]
    return " ".join(first.split())


def split_examples(help_text: str) -> tuple[str, list[str]]:
    """The help without its ``Example:`` lines, and the commands of those lines."""
    import inspect

    kept: list[str] = []
    examples: list[str] = []
    for line in inspect.cleandoc(help_text).split("\n"):
        match = _EXAMPLE.match(line)
        if match:
            examples.append(match.group("command"))
        else:
            kept.append(line)
    description = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    return description, examples


def _examples_section(ctx: Any, own: list[str]) -> str:
    """A command's own examples; a group's page shows one of each of its commands."""
    lines = [".SH EXAMPLES"]
    for example in own:
        lines += _example_block(example)
    if not own:
        for _name, sub in _subcommands(ctx):
            found = _first_example(ctx, sub)
            if found is not None:
                lines += [".PP", _roff(summary(found[1])), *_example_block(found[0])]
    return "\n".join(lines) if len(lines) > 1 else ""


def _first_example(ctx: Any, command: Any) -> tuple[str, Any] | None:
    """The first example of ``command``, or of the first of its commands that has one."""
    _description, examples = split_examples(command.help or "")
    if examples:
        return examples[0], command
    import typer

    sub_ctx = typer.Context(command, info_name=command.name, parent=ctx)
    for _name, sub in _subcommands(sub_ctx):
        found = _first_example(sub_ctx, sub)
        if found is not None:
            return found
    return None


def _example_block(example: str) -> list[str]:
    return [".PP", ".RS 4", ".nf", _roff(example), ".fi", ".RE"]


def _exit_status_section(ctx: Any) -> str:
    """The one exit-code table; a command with codes of its own (cortexctl.errors
    COMMAND_EXITS) lists those first, then the table for everything else."""
    lines = [".SH EXIT STATUS"]
    path = str(ctx.command_path).split(" ", 1)[-1]
    for own in (entry for entry in COMMAND_EXITS if entry.command == path):
        lines += [".PP", _roff(own.preamble)]
        lines += _exit_rows(own.codes)
        lines += [".PP", _roff(own.otherwise)]
    lines += _exit_rows(EXIT_CODES)
    return "\n".join(lines)


def _exit_rows(codes: Any) -> list[str]:
    lines: list[str] = []
    for row in codes:
        lines += [".TP", f".B {row.code}", _roff(row.meaning[0].upper() + row.meaning[1:] + ".")]
    return lines


def _commands_section(ctx: Any) -> str:
    subcommands = _subcommands(ctx)
    if not subcommands:
        return ""
    lines = [".SH COMMANDS"]
    for name, sub in subcommands:
        page = _roff(f"{_page_name(ctx)}-{name}")
        lines += [".TP", f".B {_roff(name)}", _roff(summary(sub)), f"See \\fB{page}\\fR(1)."]
    return "\n".join(lines)


def _environment_section() -> str:
    from cortexctl.config import SETTINGS

    lines = [
        ".SH ENVIRONMENT",
        ".TP",
        ".B CORTEX_CONFIG",
        "The config file to read instead of searching for one (same as \\fB\\-\\-config\\fR).",
    ]
    for setting in SETTINGS:
        lines += [
            ".TP",
            f".B {_roff(setting.env_var)}",
            _roff(f"{setting.help} (Config key {setting.key}.)"),
        ]
    lines += [
        ".PP",
        "A command-line flag overrides the environment, which overrides the config file, "
        "which overrides the built-in default.",
        "\\fBcortexctl config show\\fR prints where each value came from.",
    ]
    return "\n".join(lines)


def _files_section() -> str:
    return "\n".join(
        [
            ".SH FILES",
            ".TP",
            ".I ~/.config/cortexctl/config.toml",
            _roff(
                "The user's config file (the platformdirs user config dir, so "
                "$XDG_CONFIG_HOME/cortexctl on Linux). Created by "
            )
            + "\\fBcortexctl config init\\fR.",
            ".TP",
            ".I /etc/cortexctl/config.toml",
            "The system-wide config file, read when the user has none.",
        ]
    )


def _see_also_section(ctx: Any) -> str:
    related = []
    if ctx.parent is not None:
        related.append(_page_name(ctx.parent))
    related += [f"{_page_name(ctx)}-{name}" for name, _sub in _subcommands(ctx)]
    if not related:
        return ""
    lines = [".SH SEE ALSO"]
    for number, name in enumerate(related, 1):
        lines.append(f".BR {_roff(name)} (1)" + ("," if number < len(related) else ""))
    return "\n".join(lines)


def _roff_backslashes(text: str) -> str:
    """For fields click-man escapes hyphens in itself."""
    return text.replace("\\", "\\e")


def _roff(text: str) -> str:
    """Help text as roff text: backslashes and hyphens escaped, no line read as a request."""
    escaped = _roff_backslashes(text).replace("-", "\\-")
    return "\n".join(
        "\\&" + line if line.startswith((".", "'")) else line for line in escaped.split("\n")
    )
