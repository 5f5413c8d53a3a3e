"""Start-up stays cheap: what `--help`, completion and store commands import.

A regression guard on modules, never on timings: each case runs the real CLI in a child
process and lists the modules it imported. The root's table (cli/app.py COMMANDS) is what
lets `--help` and completion answer without importing every command group; the table's
help lines are checked against the groups' own here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cortexctl.cli.app import COMMANDS, app, load_command

# Never needed by a local command that only reads or writes the store.
NETWORK = ("grpc", "google.protobuf", "cortexctl.proto", "cortexctl.hub", "cortexctl.agent")
# The root and what every command shares; any other cortexctl.cli module is a command group.
SHARED_CLI = {
    "cortexctl.cli",
    "cortexctl.cli.app",
    "cortexctl.cli.coercion",
    "cortexctl.cli.completion",
    "cortexctl.cli.context",
    "cortexctl.cli.globals",
    "cortexctl.cli.options",
    "cortexctl.cli.render",
}

PROBE = """
import atexit, json, sys
out, argv = sys.argv[1], sys.argv[2:]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["cortexctl", *argv]
from cortexctl.cli.app import main
main()
"""


def imported(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules a real `cortexctl ARGV...` process imported by the time it exited."""
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *argv],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(out.read_text()))


def groups_in(modules: set[str]) -> set[str]:
    return {m for m in modules if m.startswith("cortexctl.cli.") and m not in SHARED_CLI}


def network_in(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] == "grpc" or m.startswith(NETWORK)}


@pytest.fixture
def sqlite_store(tmp_path: Path) -> dict[str, str]:
    """A fresh SQLite store, whatever CORTEX_TEST_DATABASE_URL says: the guard is about
    what a command imports, the same for either store."""
    env = {"CORTEX_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "cortexctl", "db", "upgrade", "-q"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return env


def test_root_help_imports_no_command_group(tmp_path: Path) -> None:
    modules = imported(tmp_path, "--help")
    assert groups_in(modules) == set()
    assert network_in(modules) == set()
    assert not {"sqlalchemy", "pydantic", "rich", "cortexctl.core.views"} & modules


def test_completing_a_command_name_imports_no_command_group(tmp_path: Path) -> None:
    env = {"_CORTEXCTL_COMPLETE": "complete_bash", "COMP_WORDS": "cortexctl n", "COMP_CWORD": "1"}
    modules = imported(tmp_path, env=env)
    assert groups_in(modules) == set()
    assert not {"sqlalchemy", "pydantic"} & modules


@pytest.mark.parametrize(
    ("argv", "group"),
    [
        (["nodes", "list", "--json"], "cortexctl.cli.nodes"),
        (["gc", "locks", "--quiet"], "cortexctl.cli.gc"),
        (["tasks", "list", "--json"], "cortexctl.cli.tasks"),
    ],
)
def test_a_store_command_imports_its_group_and_no_network_stack(
    tmp_path: Path, sqlite_store: dict[str, str], argv: list[str], group: str
) -> None:
    modules = imported(tmp_path, *argv, env=sqlite_store)
    assert groups_in(modules) == {group}
    assert network_in(modules) == set()
    assert "pydantic" not in modules  # cli/coercion.py converts the values


def test_the_table_says_what_each_group_says() -> None:
    assert list(COMMANDS) == list(app_commands())
    for name, entry in COMMANDS.items():
        command = load_command(name)
        first = (command.help or "").split("\n\n")[0]
        assert entry.help == " ".join(first.split()), name
        assert not command.hidden and not command.short_help and not command.deprecated, name


def app_commands() -> list[str]:
    from typer.main import get_command

    return list(get_command(app).commands)


def test_root_help_from_the_table_is_the_help_of_the_loaded_tree() -> None:
    """Root --help is laid out from the table, or from the loaded groups once they are
    loaded: both must read the same at any terminal width."""
    import typer
    from typer.main import get_command

    for width in (60, 80, 200):
        texts = []
        for load_all in (False, True):
            root = get_command(app)
            if load_all:
                list(root.commands.values())
            ctx = typer.Context(root, info_name="cortexctl", terminal_width=width)
            texts.append(root.get_help(ctx))
        assert texts[0] == texts[1]


SAMPLES = ["", "x", "7", "+7", "-1", "0", "007", "1.5", ".5", "1e3", "abc", "JSON", "json", "-"]


def test_cheap_conversion_agrees_with_typers_on_every_parameter() -> None:
    """Same value or same error as typer's own (pydantic) converter, for every parameter
    of every command, on plain and awkward inputs."""
    import typer
    from typer._click.exceptions import BadParameter
    from typer._coercion import build_runtime_param
    from typer.main import get_command

    from cortexctl.cli.coercion import FastRuntimeParam

    def outcome(runtime: Any, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return ("ok", runtime.coerce(value, param=param, ctx=ctx))
        except BadParameter as err:
            return ("error", err.format_message())

    root = get_command(app)
    stack: list[tuple[Any, Any]] = [(root, None)]
    checked = 0
    while stack:
        command, parent = stack.pop()
        ctx = typer.Context(command, info_name=command.name, parent=parent)
        for param in [*command.params, command.get_help_option(ctx)]:
            if param is None:
                continue
            fast = param._runtime_param
            assert isinstance(fast, FastRuntimeParam), (command.name, param.name)
            slow = build_runtime_param(param.type_descriptor)
            multi = param.multiple or param.nargs == -1
            values: list[Any] = [None, param.default]
            values += [[s] for s in SAMPLES] + [SAMPLES] if multi else SAMPLES
            for value in values:
                expected = outcome(slow, value, param, ctx)
                assert outcome(fast, value, param, ctx) == expected, (param.name, value)
                checked += 1
        stack.extend((sub, ctx) for sub in getattr(command, "commands", {}).values())
    assert checked > 1000
