"""`cortexctl context`: the contexts file (private, replaced whole), choosing a context,
and the token never shown. Commands through a context: tests/integration/test_remote_cli.py."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import cli_json, run_cli

TOKEN = "cortex-admin.adm_0123456789ab.s3cr3t-never-printed"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin.token"
    path.write_text(TOKEN + "\n")
    return path


def contexts_file(home: Path) -> Path:
    return home / ".config" / "cortexctl" / "contexts.toml"


def add(name: str, token_file: Path, *extra: str) -> Any:
    result = run_cli(
        "context", "add", name, "--hub", "127.0.0.1:50051", "--token-file", str(token_file), *extra
    )
    assert result.exit_code == 0, result.stderr
    return result


def one_line_error(result: Any, code: int, text: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.stderr


def test_the_file_is_private_and_holds_the_token_that_is_never_printed(
    isolated_env: Path, token_file: Path
) -> None:
    shown = add("prod", token_file)
    path = contexts_file(isolated_env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert TOKEN in path.read_text()  # copied: the context works once the file is gone
    outputs = [shown.stdout + shown.stderr]
    for args in (["context", "list"], ["context", "show", "--context", "prod"]):
        for output in ("table", "json", "yaml"):
            result = run_cli(*args, "-o", output)
            assert result.exit_code == 0, result.stderr
            outputs.append(result.stdout + result.stderr)
    assert all("s3cr3t" not in text for text in outputs)
    listed = cli_json("context", "list")
    assert [(c["name"], c["in_use"], c["credential"]) for c in listed] == [
        ("local", True, "the store here"),
        ("prod", False, "admin token"),
    ]


def test_every_change_replaces_the_file_whole(
    isolated_env: Path, token_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add("a", token_file)
    path = contexts_file(isolated_env)
    before_inode, before = path.stat().st_ino, path.read_text()
    add("b", token_file)
    assert path.stat().st_ino != before_inode  # a new file renamed over the old one
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_text()

    def fails(*_args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fails)
    one_line_error(run_cli("context", "rm", "a"), 1, "cannot write contexts file")
    assert path.read_text() == before  # the old file, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["contexts.toml"]  # no temp left


def test_choosing_a_context(
    isolated_env: Path, token_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add("a", token_file)
    add("b", token_file, "--use")
    assert cli_json("context", "show") == {
        "name": "b",
        "in_use": True,
        "hub": "127.0.0.1:50051",
        "tls": False,
        "ca_cert": None,
        "client_cert": None,
        "credential": "admin token",
        "chosen_by": "contexts file",
    }
    assert cli_json("context", "show", "--context", "a")["chosen_by"] == "--context"
    monkeypatch.setenv("CORTEX_CONTEXT", "a")
    assert cli_json("context", "show")["name"] == "a"
    assert cli_json("context", "show", "--context", "local")["name"] == "local"
    monkeypatch.delenv("CORTEX_CONTEXT")
    marked = run_cli("context", "list").stdout.splitlines()
    assert [line.split()[:2] for line in marked if line.startswith("*")] == [["*", "b"]]
    assert [c["name"] for c in cli_json("context", "list") if c["in_use"]] == ["b"]
    assert cli_json("context", "use", "--none")["name"] == "local"
    assert cli_json("context", "show")["name"] == "local"
    assert cli_json("context", "use", "a")["name"] == "a"
    removed = run_cli("context", "rm", "a")
    assert removed.exit_code == 0 and "commands now use the store here" in removed.stderr
    assert cli_json("context", "show")["name"] == "local"


def test_unknown_contexts_and_bad_settings_say_what_to_do(token_file: Path, tmp_path: Path) -> None:
    for args in (
        ["--context", "nope", "nodes", "list"],
        ["context", "use", "nope"],
        ["context", "rm", "nope"],
        ["context", "show", "--context", "nope"],
    ):
        one_line_error(run_cli(*args), 3, "no context 'nope' (known: none yet); add it with")
    as_json = run_cli("--context", "nope", "nodes", "list", "-o", "json")
    assert json.loads(as_json.stderr)["error"]["code"] == "not_found"
    one_line_error(
        run_cli(
            "context", "add", "far", "--hub", "192.0.2.1:50051", "--token-file", str(token_file)
        ),
        2,
        "refusing to send an admin token in plaintext",
    )
    one_line_error(run_cli("context", "add", "x", "--hub", "127.0.0.1:1"), 2, "needs a credential")
    one_line_error(
        run_cli("context", "add", "local", "--hub", "127.0.0.1:1", "--token-file", str(token_file)),
        2,
        "the store itself",
    )
    one_line_error(
        run_cli("context", "add", "x", "--hub", "nope", "--token-file", str(token_file)),
        2,
        "bad address",
    )
    missing = str(tmp_path / "missing.pem")
    one_line_error(
        run_cli(
            "context",
            "add",
            "x",
            "--hub",
            "127.0.0.1:1",
            "--ca-cert",
            missing,
            "--token-file",
            str(token_file),
        ),
        2,
        "cannot read --ca-cert",
    )
    empty = tmp_path / "empty.token"
    empty.write_text("\n")
    one_line_error(
        run_cli("context", "add", "x", "--hub", "127.0.0.1:1", "--token-file", str(empty)),
        2,
        "holds no admin token",
    )


LOCAL_ONLY = ("serve", "agent", "db", "config", "context", "bench", "completion")


@pytest.mark.usefixtures("store_env")
def test_no_command_but_the_local_ones_is_refused_through_a_remote_context(
    token_file: Path, tmp_path: Path
) -> None:
    """Every command of the tree, through a context whose hub is not there: each goes to
    the hub (and says it cannot reach it), none answers "not available through a remote
    context"; the local ones run here as without a context."""
    from tests.cli.test_json_contract import DATA_COMMANDS, NOT_DATA, leaf_commands

    run_cli("context", "add", "gone", "--hub", "127.0.0.1:9", "--token-file", str(token_file))
    filled = {
        "task": "tk_missing",
        "spare": "inv_missing",
        "backup": str(tmp_path / "backup.db"),
        "token_file": str(token_file),
    }
    remote = []
    for command in leaf_commands():
        if command in NOT_DATA:  # agent, bench, completion: nothing of the store or a hub
            assert command.split()[0] in LOCAL_ONLY, command
            continue
        args, _type, codes = DATA_COMMANDS[command]
        argv = [*command.split(), *(a.format(**filled) if "{" in a else a for a in args)]
        result = run_cli("--context", "gone", *argv)
        assert "not available through a remote context" not in result.stderr, argv
        if command.split()[0] in LOCAL_ONLY:
            if command != "db backup" or os.environ["CORTEX_DATABASE_URL"].startswith("sqlite"):
                assert result.exit_code in codes, (argv, result.stderr)
            continue
        one_line_error(result, 125 if command == "tasks wait" else 4, "cannot be reached")
        remote.append(command)
    assert {"nodes revoke", "gc mirrors", "mirrors rm", "audit list"} <= set(remote)
    with_flags = [
        ["mesh", "status", "--check"],
        ["mesh", "status", "--watch-events"],
        ["nodes", "revoke", "-l", "zone=eu", "--dry-run"],
        ["gc", "tasks", "--older-than", "1d", "--dry-run"],
    ]
    for argv in with_flags:
        one_line_error(run_cli("--context", "gone", *argv), 4, "cannot be reached")
