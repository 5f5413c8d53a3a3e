"""Shell completion: committed scripts are current, real bash completes, the store suggests."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cortexctl.cli.completion import COMPLETE_VAR, SHELLS, completion_script
from tests import helpers
from tests.helpers import run_cli
from tools.regen import REPO, stale_files

BASH = shutil.which("bash")
CONSOLE_SCRIPTS = Path(sys.executable).parent  # the venv's bin, holding `cortexctl`


def complete(words: str, **env: str) -> list[str]:
    """Completions the CLI answers, in-process, for a bash command line (cursor at the end)."""
    from cortexctl.cli.app import app

    parts = words.split(" ")
    result = CliRunner().invoke(
        app,
        [],
        prog_name="cortexctl",
        env={
            COMPLETE_VAR: "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(parts) - 1),
            **env,
        },
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    return result.stdout.split()


def bash_complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    """What real bash offers after sourcing completions/cortexctl.bash."""
    assert BASH is not None, "bash is needed for this test"
    assert (CONSOLE_SCRIPTS / "cortexctl").exists(), f"no cortexctl in {CONSOLE_SCRIPTS}"
    quoted = " ".join(shlex.quote(word) for word in words.split(" "))
    script = (
        f"source {shlex.quote(str(REPO / 'completions' / SHELLS['bash']))}\n"
        f"COMP_WORDS=({quoted})\n"
        "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
        "_cortexctl_completion cortexctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    child_env = {**os.environ, **(env or {})}
    child_env["PATH"] = f"{CONSOLE_SCRIPTS}{os.pathsep}{child_env.get('PATH', '')}"
    done = subprocess.run(
        [BASH, "--norc", "--noprofile", "-c", script],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout.split()


def add_node(name: str) -> str:
    """A node in the store the environment points at; returns its id."""
    return helpers.add_node(name, permissive=False)


def test_committed_scripts_are_current() -> None:
    assert stale_files(["completions"], write=False) == [], (
        "run: .venv/bin/python tools/regen.py completions"
    )


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_the_command_prints_the_committed_script(shell: str) -> None:
    result = run_cli("completion", shell)
    assert result.exit_code == 0
    assert result.stdout == (REPO / "completions" / SHELLS[shell]).read_text()
    assert COMPLETE_VAR in result.stdout


def test_zsh_script_is_a_completion_function_file() -> None:
    from typer.main import get_command

    from cortexctl.cli.app import app

    assert completion_script("zsh", get_command(app)).startswith("#compdef cortexctl\n")


def test_an_unknown_shell_is_a_usage_error() -> None:
    result = run_cli("completion", "tcsh")
    assert result.exit_code == 2
    assert "bash, zsh, fish" in result.stderr


def test_bash_completes_a_command_group() -> None:
    assert bash_complete("cortexctl no") == ["nodes"]
    assert "sandbox" in bash_complete("cortexctl nodes ")


def test_subcommands_and_setting_keys_complete_in_process() -> None:
    assert complete("cortexctl no") == ["nodes"]
    assert complete("cortexctl config get hub.lis") == ["hub.listen"]
    assert complete("cortexctl completion z") == ["zsh"]


def test_node_names_and_ids_complete_from_the_store(store_env: dict[str, str]) -> None:
    node_id = add_node("build-01")
    add_node("gpu-01")
    assert complete("cortexctl nodes show ") == ["build-01", "gpu-01"]
    assert complete("cortexctl nodes show b") == ["build-01"]
    assert complete(f"cortexctl nodes revoke {node_id[:5]}") == [node_id]
    assert complete("cortexctl nodes sandbox gpu-01 b") == ["build-01"]
    assert complete("cortexctl tasks submit g") == ["gpu-01"]
    assert complete("cortexctl tasks list --node b") == ["build-01"]
    assert complete("cortexctl journal fail g") == ["gpu-01"]
    assert bash_complete("cortexctl nodes show bu", store_env) == ["build-01"]


@pytest.mark.usefixtures("store_env")
def test_task_ids_complete_from_the_store() -> None:
    add_node("n1")
    assert run_cli("nodes", "sandbox", "n1", "--permissive").exit_code == 0
    submitted = json.loads(run_cli("tasks", "submit", "n1", "--json", "--", "true").stdout)
    assert complete("cortexctl tasks show tk_") == [submitted["id"]]
    assert complete(f"cortexctl tasks wait {submitted['id'][:6]}") == [submitted["id"]]
    assert complete("cortexctl tasks cancel nd_") == []


def test_no_store_means_no_suggestions_and_no_store_created(data_dir: Path) -> None:
    env = {"CORTEX_DATA_DIR": str(data_dir / "not-yet")}
    assert complete("cortexctl nodes show ", **env) == []
    assert complete("cortexctl tasks show ", **env) == []
    assert not (data_dir / "not-yet").exists()


def test_a_broken_setup_means_no_suggestions_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[hub\n")
    assert complete("cortexctl nodes show ", CORTEX_CONFIG=str(bad)) == []
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    assert complete("cortexctl journal fail ", CORTEX_DATABASE_URL=unreachable) == []
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    assert complete("cortexctl nodes show ", CORTEX_DATABASE_URL=f"sqlite:///{empty}") == []
