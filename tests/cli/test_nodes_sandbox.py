"""`nodes sandbox` STRICT options, their warnings, and what `nodes show` / `nodes list` print."""

from __future__ import annotations

import json

import pytest

from tests.helpers import cli_json, run_cli

pytestmark = pytest.mark.usefixtures("store_env")


@pytest.fixture
def node() -> str:
    from cortexctl.config import load_settings
    from cortexctl.core import features, nodes
    from cortexctl.store.engine import Store

    token = cli_json("invites", "create")["token"]
    store = Store(load_settings().database_url)
    with store.session() as session:
        nodes.join_with_invite(
            session,
            token,
            hostname="h",
            requested_name="n1",
            agent_version="",
            labels={},
            capabilities=["tasks", *features.POLICY_FEATURES, features.ISOLATION_BWRAP],
        )
    store.dispose()
    return "n1"


def sandbox(*args: str) -> tuple[list[dict[str, object]], str]:
    result = run_cli("nodes", "sandbox", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_pins_env_network_and_limits_round_trip(node: str) -> None:
    [change], _ = sandbox(
        node,
        "--strict",
        "--allow",
        "ls",
        "--allow",
        "git status",
        "--allow-env",
        "CI",
        "--no-network",
        "--cpu-time",
        "10m",
        "--open-files",
        "64",
        "--address-space",
        "2GiB",
    )
    assert change["allowed_commands"] == ["ls"]
    assert change["allowed_prefixes"] == ["git status"]
    assert change["allowed_env"] == ["CI"] and change["network"] == "deny"
    [change], _ = sandbox(node, "--allow-env", "MY_SETTING", "--network")
    assert change["allowed_env"] == ["CI", "MY_SETTING"]  # --allow-env adds
    assert change["network"] == "allow" and change["allowed_prefixes"] == ["git status"]
    shown = cli_json("nodes", "show", node)
    assert shown["limits"]["cpu_seconds"] == 600 and shown["limits"]["open_files"] == 64
    assert shown["limits"]["address_space_bytes"] == 2 * 1024**3
    assert shown["isolation"] == "bwrap"
    [change], _ = sandbox(node, "--clear-env", "--default-limits")
    assert change["allowed_env"] == []
    assert cli_json("nodes", "show", node)["limits"]["open_files"] == 1024  # the hub default


def test_show_and_list_print_the_policy_and_isolation(node: str) -> None:
    sandbox(node, "--strict", "--allow", "git status", "--allow-env", "CI", "--no-network")
    shown = run_cli("nodes", "show", node).stdout
    for text in ("git status", "CI", "deny", "cpu 1h", "open files 1024", "bwrap"):
        assert text in shown, text
    listed = run_cli("nodes", "list").stdout
    assert "ISOL" in listed.splitlines()[0] and "bwrap" in listed


def test_an_entry_with_spaces_is_a_pin_not_a_name(node: str) -> None:
    [change], _ = sandbox(node, "--strict", "--allow", "python3 -I -m json.tool")
    assert change["allowed_commands"] == []
    assert change["allowed_prefixes"] == ["python3 -I -m json.tool"]
    bad = run_cli("nodes", "sandbox", node, "--allow", "/bin/sh -c")
    assert bad.exit_code == 2 and "not a path" in bad.stderr


@pytest.mark.parametrize(
    "command", ["sh", "python3", "env", "xargs", "find", "awk", "git", "split", "uv"]
)
def test_allowing_a_command_that_runs_code_warns_and_shows_how_to_pin(
    node: str, command: str
) -> None:
    _, stderr = sandbox(node, "--strict", "--allow", command)
    assert stderr.startswith("warning: ") and "arbitrary code" in stderr
    assert f"--allow '{command} SUBCOMMAND'" in stderr


def test_a_pin_of_such_a_command_warns_about_trailing_arguments(node: str) -> None:
    _, stderr = sandbox(node, "--strict", "--allow", "find .")
    assert "-exec" in stderr and "bubblewrap" in stderr
    _, quiet = sandbox(node, "--strict", "--allow", "ls", "--allow", "cat")
    assert quiet == ""


def test_allowing_a_command_that_writes_any_file_warns_about_the_credential(node: str) -> None:
    _, stderr = sandbox(node, "--strict", "--allow", "tee")
    assert stderr.startswith("warning: ") and "credential in its state dir" in stderr


@pytest.mark.parametrize(
    "name",
    ["BASH_FUNC_ls%%", "BASH_ENV", "ENV", "LD_PRELOAD", "GIT_SSH_COMMAND", "PYTHONPATH"],
)
def test_allowing_an_env_name_that_changes_programs_warns(node: str, name: str) -> None:
    [change], stderr = sandbox(node, "--allow-env", name)
    assert name in change["allowed_env"]  # a warning, not a refusal
    assert stderr.startswith("warning: ") and name in stderr


def test_sandbox_with_nothing_to_change_is_a_usage_error(node: str) -> None:
    result = run_cli("nodes", "sandbox", node)
    assert result.exit_code == 2 and "nothing to change" in result.stderr


def test_submission_with_an_env_name_not_allowed_is_refused_with_the_fix(node: str) -> None:
    sandbox(node, "--strict", "--allow", "ls", "--allow-env", "CI")
    result = run_cli("tasks", "submit", node, "--env", "BASH_ENV=/x", "--", "ls")
    assert result.exit_code == 1
    assert "BASH_ENV" in result.stderr and "--allow-env" in result.stderr
    ok = run_cli("tasks", "submit", node, "--env", "CI=1", "--", "ls")
    assert ok.exit_code == 0, ok.stderr
