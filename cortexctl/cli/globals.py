"""Global options anywhere on the line: `cortexctl nodes list --data-dir X -o json`.

click only parses a group's options before its sub-command. Operators (and kubectl) put
them anywhere, so before click parses, the root moves every global option it finds after
the sub-command to the front. It walks the line the way click will: through the group
names, skipping the values of the command's own options, and stopping at ``--`` (what
follows is a task's argv, never options).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Global option -> whether it takes a value. Short forms map to their long name.
GLOBAL_OPTIONS: dict[str, bool] = {
    "--config": True,
    "--context": True,
    "--data-dir": True,
    "--database-url": True,
    "--output": True,
    "--json": False,
    "--quiet": False,
}
SHORT_GLOBALS = {"-o": "--output", "-q": "--quiet"}


@dataclass
class Hoisted:
    args: list[str]  # the line with global options first
    output: str | None = None  # the last -o/--output value (or "json" for --json)
    quiet: bool = False


def _global_name(token: str) -> tuple[str, str | None] | None:
    """(long name, inline value) if ``token`` is a global option, else None."""
    if token.startswith("--"):
        name, sep, value = token.partition("=")
        if name in GLOBAL_OPTIONS:
            return name, value if sep else None
        return None
    if token[:2] in SHORT_GLOBALS and token.startswith("-") and not token.startswith("--"):
        long = SHORT_GLOBALS[token[:2]]
        rest = token[2:]
        if not rest:
            return long, None
        if GLOBAL_OPTIONS[long]:
            return long, rest.removeprefix("=")  # -ojson, -o=json
    return None


def _takes_value(command: Any, token: str) -> bool:
    """Whether ``token`` is one of ``command``'s own options that consumes the next token."""
    if "=" in token and token.startswith("--"):
        return False
    for param in getattr(command, "params", ()):
        if getattr(param, "param_type_name", "") != "option":
            continue
        if token in param.opts or token in param.secondary_opts:
            return not (param.is_flag or param.count)
    return False


def hoist(root: Any, ctx: Any, args: Sequence[str]) -> Hoisted:
    """Move global options to the front of ``args`` and note the output ones."""
    front: list[str] = []
    rest: list[str] = []
    result = Hoisted(args=[])
    command = root
    expecting_value = False
    tokens = list(args)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if expecting_value:
            rest.append(token)
            expecting_value = False
            continue
        if token == "--":
            rest.extend(tokens[index - 1 :])
            break
        found = _global_name(token)
        if found is not None:
            name, value = found
            if GLOBAL_OPTIONS[name] and value is None:
                if index >= len(tokens):
                    rest.append(token)  # let click say the value is missing
                    break
                value = tokens[index]
                index += 1
            if name == "--output":
                result.output = value
            elif name == "--json":
                result.output = "json"
            elif name == "--quiet":
                result.quiet = True
            front.extend([name, value] if value is not None else [name])
            continue
        if token.startswith("-") and token != "-":
            expecting_value = _takes_value(command, token)
            rest.append(token)
            continue
        rest.append(token)
        # A group name moves the walk into that group's command.
        get_command = getattr(command, "get_command", None)
        if get_command is not None and hasattr(command, "list_commands"):
            sub = get_command(ctx, token)
            if sub is not None:
                command = sub
    result.args = front + rest
    return result
