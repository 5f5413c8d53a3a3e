"""Every data command honours -o json (and jsonl), and one thing has one key everywhere.

The test walks the whole click command tree: a command that is not in DATA_COMMANDS nor
in NOT_DATA fails it, so a new command is classified (and its JSON checked) when it lands.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cortexctl.core.views import LEGACY_ENV
from tests.helpers import Cli, run_cli

# command path -> (arguments after it, JSON type, allowed exit codes). {task}, {invite}
# and {spare} are filled in from the store the test makes; order matters (revoke last).
DATA_COMMANDS: dict[str, tuple[list[str], type, tuple[int, ...]]] = {
    "serve": (["--dry-run"], dict, (0,)),
    "invites create": (["--ttl", "1h30m"], dict, (0,)),
    "invites list": (["--all"], list, (0,)),
    "invites revoke": (["{spare}"], list, (0,)),
    "nodes list": ([], list, (0,)),
    "nodes show": (["n1"], dict, (0,)),
    "nodes sandbox": (["n1", "--strict", "--allow", "true"], list, (0,)),
    "tasks submit": (["n1", "--", "true"], dict, (0,)),
    "tasks list": ([], list, (0,)),
    "tasks show": (["{task}"], dict, (0,)),
    "tasks cancel": (["{task}"], dict, (0,)),
    "tasks wait": (["{task}", "--timeout", "5s"], dict, (123,)),  # cancelled: 120-125
    "tasks logs": (["{task}"], dict, (0,)),
    "nodes cordon": (["n1"], dict, (0,)),
    "nodes uncordon": (["n1"], dict, (0,)),
    "nodes drain": (["n1", "--timeout", "5s"], dict, (0,)),
    "journal fail": (["n1"], dict, (0,)),
    "mesh status": ([], dict, (0,)),
    "hubs list": (["--all"], list, (0,)),
    "mirrors ls": (["n1"], dict, (0,)),
    "mirrors rm": (["n1", "--yes"], dict, (0,)),
    "nodes quota": (["n1", "--bytes", "1GiB"], dict, (0,)),
    "gc locks": ([], dict, (0,)),
    "gc mirrors": ([], dict, (0,)),
    "gc invites": ([], dict, (0,)),
    "gc tasks": (["--older-than", "30d"], dict, (0,)),
    "gc audit": ([], dict, (0,)),
    "admin-tokens create": (["--role", "viewer", "--name", "ci"], dict, (0,)),
    "admin-tokens list": (["--all"], list, (0,)),
    "admin-tokens revoke": (["ci"], list, (0,)),
    "audit list": ([], list, (0,)),
    "db upgrade": ([], dict, (0,)),
    "db current": ([], dict, (0,)),
    "db backup": (["{backup}", "--force"], dict, (0,)),
    "config path": ([], dict, (0,)),
    "config show": ([], list, (0,)),
    "config get": (["hub.listen"], dict, (0,)),
    "config set": (["hub.listen", "127.0.0.1:50052"], dict, (0,)),
    "config init": (["--force"], dict, (0,)),
    "nodes rotate-credential": (["n1", "--yes"], dict, (0,)),
    "nodes rename": (["n1", "n1b"], dict, (0,)),
    "nodes revoke": (["n1b", "--yes"], dict, (0,)),
    "nodes delete": (["n1b", "--yes"], dict, (0,)),
    "context add": (["c1", "--hub", "127.0.0.1:1", "--token-file", "{token_file}"], dict, (0,)),
    "context list": ([], list, (0,)),
    "context show": ([], dict, (0,)),
    "context use": (["--none"], dict, (0,)),
    "context rm": (["c1"], dict, (0,)),
}
READ_ONLY = {
    "serve",
    "invites list",
    "nodes list",
    "nodes show",
    "tasks list",
    "tasks show",
    "tasks wait",
    "tasks logs",
    "mesh status",
    "hubs list",
    "admin-tokens list",
    "audit list",
    "mirrors ls",
    "db current",
    "config path",
    "config show",
    "config get",
    "context list",
    "context show",
}
NOT_DATA = {
    "agent": "runs the node agent until stopped (JSON of agent sync: tests/integration)",
    "agent sync": "needs a hub; its JSON is checked in tests/integration/test_sync.py",
    "bench": "starts a throwaway hub for seconds; its JSON is checked by its own test",
    "completion": "prints a shell script, not data",
}
# Keys whose values differ in type by design.
ANY_TYPE = {"value"}  # a setting's value: a duration, a size, a list, a string
# Names the vocabulary does not use (the key on the right is the one).
SYNONYMS = {
    "uses": "uses_allowed",
    "failed": "failed_tasks",
    "file": "path",
    "removed": "items",
    "removed_files": "files_removed",
    "removed_bytes": "bytes_removed",
    "ttl_s": "older_than_s",
    "retention_s": "older_than_s",
    "task_id": "id",
}


def leaf_commands() -> list[str]:
    from typer.main import get_command

    from cortexctl.cli.app import app

    found: list[str] = []

    def walk(command: Any, path: list[str]) -> None:
        subs = getattr(command, "commands", None)
        if subs is None:
            found.append(" ".join(path))
            return
        if path and getattr(command, "invoke_without_command", False):
            found.append(" ".join(path))  # a group that is a command too (agent)
        for name, sub in subs.items():
            if not sub.hidden:
                walk(sub, [*path, name])

    walk(get_command(app), [])
    return found


def test_every_command_is_classified() -> None:
    unclassified = set(leaf_commands()) - set(DATA_COMMANDS) - set(NOT_DATA)
    assert not unclassified, f"add these to DATA_COMMANDS or NOT_DATA: {sorted(unclassified)}"
    assert not set(DATA_COMMANDS) & set(NOT_DATA)


def make_node() -> None:
    from cortexctl.config import load_settings
    from cortexctl.core import invites, nodes
    from cortexctl.store.engine import Store

    store = Store(load_settings().database_url)
    with store.session(write=True) as session:
        token = invites.create_invite(
            session, ttl_s=3600, uses=1, labels={}, sandbox=None, note=""
        ).token
    with store.session(write=True) as session:
        nodes.join_with_invite(
            session,
            token,
            hostname="h",
            requested_name="n1",
            agent_version="",
            labels={"zone": "eu"},
            capabilities=[],
        )
    store.dispose()


# Values whose keys are data, not vocabulary: labels, env, an audit entry's detail...
FREE_FORM = {"labels", "self_labels", "env", "limits", "detail", "held_elsewhere"}
# Maintenance jobs' own result summaries (`gc mirrors` `records`, `mesh status --jobs`
# `last_result`) still say `removed`; not renamed yet (they are stored as they are).
FREE_FORM |= {"records", "last_result"}
# More runs of data commands than DATA_COMMANDS has, after the command named first.
MORE_RUNS: dict[str, list[tuple[list[str], type, tuple[int, ...]]]] = {
    "tasks submit": [(["-l", "!gpu", "--", "true"], list, (0,))],  # fan-out
    "mesh status": [
        (["--jobs"], dict, (0,)),
        # No live hub on the store alone: critical; through a hub, its nodes are offline.
        (["--check"], dict, (1, 2)),
        (["--check", "--min-hubs", "0", "--warn-offline", "0"], dict, (0,)),
    ],
}


def objects_of(document: Any) -> list[dict[str, Any]]:
    """The objects whose keys form the vocabulary: the document's, nested ones too."""
    if isinstance(document, list):
        return [found for item in document for found in objects_of(item)]
    if not isinstance(document, dict):
        return []
    nested = [
        found
        for key, value in document.items()
        if key not in FREE_FORM
        for found in objects_of(value)
    ]
    return [document, *nested]


def runs() -> list[tuple[str, list[str], type, tuple[int, ...]]]:
    found = []
    for command, (args, expected, codes) in DATA_COMMANDS.items():
        found.append((command, args, expected, codes))
        found += [(command, *more) for more in MORE_RUNS.get(command, [])]
    return found


def json_type(value: Any) -> str:
    return type(value).__name__


@pytest.mark.timeout(300)  # some 50 commands, twice through a remote context
@pytest.mark.usefixtures("store_env")
def test_every_data_command_honours_json_with_one_vocabulary(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Locally, then every command through a remote context (`serve`, `db`, `config` and
    `context` run here whatever the context): the same types, keys and exit codes."""
    make_node()
    spare = json.loads(run_cli("invites", "create", "-o", "json").stdout)["id"]
    token_file = tmp_path / "admin.token"
    token_file.write_text("cortex-admin.x.y\n")
    filled: dict[str, str] = {
        "spare": spare,
        "backup": str(tmp_path / "backup.db"),
        "token_file": str(token_file),
    }
    types_of: dict[str, dict[str, str]] = {}  # key -> {type: command}
    for command, args, expected, codes in runs():
        argv = [*command.split(), *(a.format(**filled) if "{" in a else a for a in args)]
        # Without the renamed keys' old names: the vocabulary of the next schema.
        monkeypatch.setenv(LEGACY_ENV, "0")
        result = cli("-o", "json", *argv)
        assert "not available through a remote context" not in result.stderr, argv
        if command == "db backup" and not os.environ["CORTEX_DATABASE_URL"].startswith("sqlite"):
            # PostgreSQL: pg_dump guidance, exit 2, as a JSON error on stderr.
            assert result.exit_code == 2 and json.loads(result.stderr)["error"]["code"] == "usage"
            continue
        assert result.exit_code in codes, f"{argv}: exit {result.exit_code}: {result.stderr}"
        document = json.loads(result.stdout)
        assert isinstance(document, expected), f"{command}: {type(document).__name__}"
        if command == "tasks submit" and isinstance(document, dict):
            filled["task"] = document["id"]
        for obj in objects_of(document):
            for key, value in obj.items():
                assert key not in SYNONYMS, (
                    f"{command}: {key!r} (the vocabulary says {SYNONYMS[key]!r})"
                )
                if key.endswith("_id") and value is not None:
                    assert isinstance(value, str), f"{command}: {key}"
                if key.endswith("_at") and value is not None:
                    assert isinstance(value, str) and value.endswith("Z"), f"{command}: {key}"
                if value is not None and key not in ANY_TYPE:
                    types_of.setdefault(key, {}).setdefault(json_type(value), command)
        # jsonl: a list is one item a line, an object one line (read commands only:
        # running a change twice would change something else).
        if command in READ_ONLY:
            lines = cli("-o", "jsonl", *argv).stdout.splitlines()
            parsed = [json.loads(line) for line in lines]
            assert len(parsed) == (len(document) if isinstance(document, list) else 1), command
    clashes = {key: seen for key, seen in types_of.items() if len(seen) > 1}
    assert not clashes, f"one key, several types: {clashes}"


def documented_commands() -> set[str]:
    """The commands of docs/json.md's per-command table, without their arguments
    (`gc locks\\|mirrors` stands for `gc locks` and `gc mirrors`)."""
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "json.md").read_text()
    found: set[str] = set()
    for line in doc.split("\n## Per command\n", 1)[1].splitlines():
        if not line.startswith("| `"):
            continue
        for cell in re.findall(r"`([^`]+)`", line.split(" | ", 1)[0]):
            cell = cell.replace("\\|", "|")
            words = [w for w in cell.split() if re.fullmatch(r"[a-z][a-z|-]*|--check", w)]
            *head, last = words
            found.update(" ".join([*head, one]) for one in last.split("|"))
    return found


def test_docs_json_lists_every_data_command() -> None:
    documented = documented_commands()
    wanted = {*DATA_COMMANDS, "agent sync", "mesh status --check"}
    missing = sorted(wanted - documented)
    assert not missing, f"docs/json.md has no row for {missing}"


@pytest.mark.usefixtures("store_env")
def test_renamed_keys_keep_their_old_name_for_one_release() -> None:
    make_node()
    created = json.loads(run_cli("invites", "create", "--json").stdout)
    assert created["uses"] == created["uses_allowed"] == 1
    failed = json.loads(run_cli("journal", "fail", "n1", "--json").stdout)
    assert failed["failed"] == failed["failed_tasks"] == 0
    gc = json.loads(run_cli("gc", "locks", "--json").stdout)
    assert gc["expired"] == gc["items"] == [] and gc["ttl_s"] == gc["older_than_s"]


@pytest.mark.usefixtures("store_env")
def test_every_gc_command_has_the_same_shape() -> None:
    shapes = []
    for task, extra in (
        ("locks", []),
        ("mirrors", []),
        ("invites", []),
        ("tasks", ["--older-than", "1d"]),
        ("audit", []),
    ):
        result = run_cli("gc", task, *extra, "-o", "json")
        assert result.exit_code == 0, result.stderr
        shapes.append(json.loads(result.stdout))
    common = {
        "task",
        "dry_run",
        "skipped",
        "count",
        "items",
        "files_removed",
        "bytes_removed",
        "empty_dirs",
        "older_than_s",
    }
    for shape in shapes:
        assert common <= set(shape)
