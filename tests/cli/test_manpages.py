"""Man pages: current, one per command, clean under groff, with EXAMPLES and EXIT STATUS."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cortexctl.errors import EXIT_CODES
from tools.manpages import man_pages, split_examples
from tools.regen import REPO, stale_files

MAN = REPO / "man"
PAGES = sorted(MAN.glob("*.1"))


def command_tree() -> list[tuple[str, Any]]:
    """(command path, command) of every visible command and group, from the CLI itself."""
    import typer
    from typer.main import get_command

    from cortexctl.cli.app import app

    found: list[tuple[str, Any]] = []

    def walk(command: Any, ctx: Any) -> None:
        found.append((ctx.command_path, command))
        for name in getattr(command, "list_commands", lambda _ctx: [])(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                walk(sub, typer.Context(sub, info_name=name, parent=ctx))

    root = get_command(app)
    walk(root, typer.Context(root, info_name="cortexctl"))
    return found


def groff() -> str:
    found = shutil.which("groff")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("groff is required in CI (apt-get install groff-base)")
        pytest.skip("groff is not installed (apt-get install groff-base)")
    return found


def test_committed_pages_are_current(monkeypatch: pytest.MonkeyPatch) -> None:
    # A narrow terminal must not change a byte: pages may not depend on the machine.
    monkeypatch.setenv("COLUMNS", "40")
    assert stale_files(["man"], write=False) == [], "run: .venv/bin/python tools/regen.py man"


def test_one_page_per_command_and_group() -> None:
    expected = {path.replace(" ", "-") + ".1" for path, _command in command_tree()}
    assert {page.name for page in PAGES} == expected
    assert {"cortexctl.1", "cortexctl-nodes.1", "cortexctl-nodes-sandbox.1"} <= expected


def test_every_command_documents_an_example() -> None:
    leaves = [(path, cmd) for path, cmd in command_tree() if not hasattr(cmd, "list_commands")]
    missing = [path for path, cmd in leaves if not split_examples(cmd.help or "")[1]]
    assert missing == [], "add an 'Example: ...' line to the docstring of these commands"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_groff_renders_without_warnings(page: Path) -> None:
    for device in ([], ["-Tutf8"]):
        done = subprocess.run(
            [groff(), "-man", "-ww", "-z", *device, str(page)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0
        assert done.stderr == "", f"{page.name}:\n{done.stderr}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_each_page_has_examples_and_exit_status(page: Path) -> None:
    text = page.read_text()
    examples = text.split(".SH EXAMPLES\n", 1)[1].split(".SH ", 1)[0]
    assert ".nf\ncortexctl" in examples
    exit_status = text.split(".SH EXIT STATUS\n", 1)[1].split(".SH ", 1)[0]
    for row in EXIT_CODES:
        assert f".B {row.code}\n" in exit_status
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS"):
        assert f".SH {section}\n" in text


@pytest.mark.parametrize(
    ("page", "codes"),
    [
        ("cortexctl-tasks-submit.1", range(120, 126)),
        ("cortexctl-tasks-wait.1", range(120, 126)),
        ("cortexctl-nodes-drain.1", [120]),
        ("cortexctl-mesh-status.1", range(4)),
    ],
)
def test_commands_with_codes_of_their_own_list_them_before_the_table(page: str, codes: Any) -> None:
    from cortexctl.errors import CHECK_EXIT_CODES, WAIT_EXIT_CODES

    text = (MAN / page).read_text()
    exit_status = text.split(".SH EXIT STATUS\n", 1)[1].split(".SH ", 1)[0]
    # .PP the command's own codes, then .PP what the one table is for, and the table.
    _, own, table = exit_status.split(".PP\n")
    meanings = {row.code: row.meaning for row in (*WAIT_EXIT_CODES, *CHECK_EXIT_CODES)}
    for code in codes:
        assert f".B {code}\n" in own, page
        first_words = meanings[code].split(" (")[0].split(":")[0]
        assert first_words[1:] in own, (page, code)
    assert ".B 130\n" in table and "Interrupted" in table  # then the one table


def test_a_command_page_shows_its_docstring_example_and_options() -> None:
    page = (MAN / "cortexctl-nodes-sandbox.1").read_text()
    assert '.TH "CORTEXCTL-NODES-SANDBOX" "1" ""' in page
    assert "cortexctl nodes sandbox build\\-01 \\-\\-strict" in page
    assert "\\fB\\-\\-permissive\\fP" in page
    assert "Example:" not in page  # moved to EXAMPLES
    assert ".BR cortexctl\\-nodes (1)" in page


def test_the_root_page_lists_the_environment() -> None:
    from cortexctl.config import SETTINGS

    page = (MAN / "cortexctl.1").read_text()
    for setting in SETTINGS:
        assert f".B {setting.env_var}\n" in page


def test_pages_do_not_depend_on_the_machine(tmp_path: Path, isolated_env: Path) -> None:
    for name, text in man_pages():
        for local in (str(tmp_path), str(isolated_env), os.getcwd(), str(REPO)):
            assert local not in text, f"{name} mentions {local}"
