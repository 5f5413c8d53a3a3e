"""The CLI through a remote context against a real hub (TLS, a generated CA, admin tokens):
the same output as on the store, errors that say what to do, and no store code loaded.

The command tests themselves run a second time through a context by the ``cli`` fixture
(tests/conftest.py): tests/cli/test_verbs_cli.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEADLINE_SCALE, wait_until
from tests.faults.certs import make_pki
from tests.helpers import add_context, add_node, child_env, cli_json, run_cli, start_tls_hub

pytestmark = pytest.mark.integration

AGE = re.compile(r"\b\d+(\.\d+)?(ms|[smhd])( \d+[smhd])* ago\b")


@pytest.fixture
def tls_hub(tmp_path: Path, store_env: dict[str, str], isolated_env: Path) -> Iterator[Any]:
    """A TLS hub on the test's store and a context `hub` with an admin token."""
    env = child_env(store_env, isolated_env)
    hub, pki = start_tls_hub(tmp_path / "remote", env)
    try:
        add_context("hub", hub, pki.ca, root=tmp_path)
        yield hub, pki, env
    finally:
        hub.stop()


def as_json(*args: str) -> Any:
    """A command's JSON (-o json before a task's `--`)."""
    result = run_cli("-o", "json", *args)
    assert result.exit_code == 0, f"{args} exited {result.exit_code}: {result.stderr}"
    return json.loads(result.stdout)


def _age_tasks(days: int) -> None:
    """Every task made ``days`` ago, so an age printed twice a second apart reads the same."""
    from sqlalchemy import update

    from cortexctl.config import load_settings
    from cortexctl.core import clock
    from cortexctl.store.engine import Store
    from cortexctl.store.models import Task

    store = Store(load_settings().database_url)
    try:
        with store.session(write=True) as session:
            session.execute(update(Task).values(created_at=clock.now() - timedelta(days=days)))
    finally:
        store.dispose()


def _same(result: Any) -> tuple[int, str, str]:
    """A run's exit code and output, with ages (which move between two runs) masked."""

    def mask(text: str) -> str:
        return re.sub(r" +", " ", AGE.sub("AGE ago", text))

    return result.exit_code, mask(result.stdout), mask(result.stderr)


@pytest.mark.timeout(300)  # some 30 commands, each twice, on a shared machine
def test_read_commands_print_what_they_print_on_the_store(tls_hub: Any) -> None:
    node_id = add_node("n1", "zone=eu")
    add_node("n2", "zone=us", permissive=False)
    add_node("n4", "zone=eu")
    assert run_cli("nodes", "revoke", "n4", "--yes").exit_code == 0  # --active leaves it out
    assert run_cli("nodes", "sandbox", "n1", "--allow", "echo", "--allow-env", "CI").exit_code == 0
    task = as_json("tasks", "submit", "n1", "--", "echo", "hi")["id"]
    run_cli("tasks", "submit", "n2", "--", "rm", "-rf", "/")  # rejected by its policy
    run_cli("invites", "create", "--name", "n3", "--label", "zone=eu")
    run_cli("tasks", "cancel", as_json("tasks", "submit", "n1", "--", "true")["id"])
    _age_tasks(3)
    commands = [
        (["nodes", "list"], ("table", "wide", "json")),
        (["nodes", "list", "-l", "zone=eu", "--active"], ("table",)),
        (["nodes", "list", "--active"], ("table", "json")),
        (["nodes", "show", node_id[:8]], ("table", "yaml")),
        (["nodes", "show", "ghost"], ("json",)),
        (["tasks", "list"], ("table", "json")),
        (["tasks", "list", "--state", "nonsense"], ("table",)),
        (["tasks", "show", task], ("table",)),
        (["tasks", "show", "tk_missing"], ("table",)),
        (["tasks", "logs", task], ("json",)),
        (["invites", "list", "--all"], ("table", "json")),
        # Changes, planned only (--dry-run changes and audits nothing), and their errors.
        (["nodes", "revoke", "n1", "--dry-run"], ("table", "json")),
        (["nodes", "revoke", "-l", "zone=eu", "--dry-run"], ("table", "yaml")),
        (["nodes", "sandbox", "-l", "zone=eu", "--strict", "--dry-run"], ("table", "json")),
        (["nodes", "sandbox", "n1", "--strict", "--permissive"], ("table",)),
        (["nodes", "rename", "n1", "n9", "--dry-run"], ("table", "json")),
        (["nodes", "rename", "n1", "n2", "--dry-run"], ("table",)),
        (["nodes", "rotate-credential", "n1", "--dry-run"], ("table", "json")),
        (["nodes", "delete", "n4", "--dry-run"], ("table", "json")),
        (["nodes", "delete", "ghost", "--yes"], ("json",)),
        (["nodes", "quota", "ghost", "--clear"], ("table",)),
        (["nodes", "drain", "ghost"], ("table",)),
        (["journal", "fail", "n1", "--dry-run"], ("table", "json")),
        (["gc", "locks", "--dry-run"], ("table", "json")),
        (["gc", "mirrors", "--dry-run"], ("table", "json")),
        (["gc", "invites", "--dry-run"], ("table", "json")),
        (["gc", "tasks", "--older-than", "1d", "--dry-run"], ("table", "json")),
        (["gc", "audit", "--dry-run"], ("table", "json")),
        (["mirrors", "ls", "n1"], ("table", "json")),
        (["mirrors", "ls", "ghost"], ("table",)),
        (["mirrors", "rm", "n4", "--dry-run"], ("table", "json")),
        (["audit", "list"], ("table", "json")),
        (["audit", "list", "--actor", "nobody", "--since", "1h"], ("table",)),
        (["admin-tokens", "list", "--all"], ("table",)),
        (["mesh", "status", "--check", "--min-hubs", "2"], ("table", "json")),
        (["mesh", "status", "--check", "--warn-offline", "9"], ("table",)),
    ]
    for command, outputs in commands:
        for output in outputs:
            local = run_cli(*command, "-o", output)
            remote = run_cli("--context", "hub", *command, "-o", output)
            assert _same(remote) == _same(local), (command, output, local.stdout, remote.stdout)
    # The hubs: the same but for their leases, renewed between the two looks.
    local_hubs, remote_hubs = (
        [{k: v for k, v in h.items() if not k.startswith("lease_")} for h in cli_json(*c)]
        for c in (["hubs", "list", "--all"], ["--context", "hub", "hubs", "list", "--all"])
    )
    assert remote_hubs == local_hubs and len(local_hubs) == 1
    lease = re.compile(r"\d+s left")
    local, remote = run_cli("hubs", "list"), run_cli("--context", "hub", "hubs", "list")
    assert _same(remote)[0] == 0 and lease.sub("", _same(remote)[1]) == lease.sub(
        "", _same(local)[1]
    )
    # The mesh at one instant: the same but for the instant itself.
    local_mesh = cli_json("mesh", "status", "--jobs")
    remote_mesh = cli_json("--context", "hub", "mesh", "status", "--jobs")
    local_mesh.pop("taken_at"), remote_mesh.pop("taken_at")
    jobs = []
    for item in (local_mesh, remote_mesh):
        for job in item["jobs"]:  # a job may run between the two looks
            for key in ("last_started_at", "last_duration_s", "next_run_at", "runs", "last_result"):
                job.pop(key)
        # ... and a job's first run may come between them: compare the jobs both saw.
        jobs.append({(job["hub_id"], job["job"]): job for job in item.pop("jobs")})
    both = jobs[0].keys() & jobs[1].keys()
    assert both and all(jobs[0][key] == jobs[1][key] for key in both), jobs
    assert remote_mesh == local_mesh


def test_changes_through_a_context_are_audited_under_the_tokens_name(tls_hub: Any) -> None:
    add_node("n1")
    created = cli_json("--context", "hub", "invites", "create", "--name", "n5", "--uses", "1")
    assert created["name"] == "n5" and created["token"].startswith("cortex-invite.")
    assert cli_json("invites", "list")[-1]["name"] == "n5"
    submitted = as_json("--context", "hub", "tasks", "submit", "n1", "--", "true")
    cancelled = cli_json("--context", "hub", "tasks", "cancel", submitted["id"])
    assert cancelled == {"id": submitted["id"], "state": "cancelled", "dry_run": False}
    actors = {(e["action"], e["actor"]) for e in cli_json("audit", "list")}
    assert {("invites.create", "hub-admin"), ("tasks.cancel", "hub-admin")} <= actors, actors
    human = run_cli("--context", "hub", "tasks", "submit", "n1", "--", "true")
    assert human.exit_code == 0 and "is not connected; the task waits" in human.stderr


def one_line_error(result: Any, code: int, *texts: str) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in texts:
        assert text in lines[0], (text, lines[0])
    return str(lines[0])


@pytest.mark.timeout(300)  # hubs that answer wrongly, each tried once, on a shared machine
def test_errors_say_what_to_do(tmp_path: Path, tls_hub: Any) -> None:
    hub, pki, _env = tls_hub
    port = hub.address.rsplit(":", 1)[1]
    add_node("n1")
    one_line_error(
        run_cli("--context", "nope", "nodes", "list"), 3, "no context 'nope'", "context add nope"
    )
    # `db` always works on the store here.
    assert run_cli("--context", "hub", "db", "current").exit_code == 0
    # Nothing listening.
    run_cli(
        "context",
        "add",
        "gone",
        "--hub",
        "127.0.0.1:9",
        "--token-file",
        str(tmp_path / "hub.token"),
    )
    one_line_error(
        run_cli("--context", "gone", "nodes", "list"),
        4,
        "hub 127.0.0.1:9 of context 'gone' cannot be reached",
    )
    # TLS that cannot work: another CA, and plaintext to a TLS hub.
    other = make_pki(tmp_path / "other-pki")
    token_file = str(tmp_path / "hub.token")
    run_cli(
        "context",
        "add",
        "wrong-ca",
        "--hub",
        f"localhost:{port}",
        "--ca-cert",
        str(other.ca),
        "--token-file",
        token_file,
    )
    one_line_error(
        run_cli("--context", "wrong-ca", "nodes", "list"), 2, "is not signed by --ca-cert"
    )
    run_cli("context", "add", "plain", "--hub", f"localhost:{port}", "--token-file", token_file)
    one_line_error(run_cli("--context", "plain", "nodes", "list"), 2, "serves TLS; pass --ca-cert")
    # A role too low names the role needed; a revoked token is refused.
    viewer_file, _ = add_context("viewer", hub, pki.ca, "viewer", root=tmp_path)
    assert run_cli("--context", "viewer", "nodes", "list").exit_code == 0
    one_line_error(
        run_cli("--context", "viewer", "tasks", "submit", "n1", "--", "true"),
        6,
        "SubmitTask needs the operator role",
        "has viewer",
    )
    assert cli_json("tasks", "list") == []
    # A change needs its role: one line naming it, and nothing changed (not even asked).
    for command, needs in (
        (["nodes", "revoke", "n1", "--yes"], "RevokeNode needs the admin role"),
        (["nodes", "rename", "n1", "n9"], "RenameNode needs the admin role"),
        (["admin-tokens", "create", "--role", "admin", "--name", "x"], "needs the admin role"),
        (["gc", "tasks", "--older-than", "30d", "--dry-run"], "RunGc needs the operator role"),
        (["journal", "fail", "n1"], "FailNodeTasks needs the operator role"),
    ):
        one_line_error(run_cli("--context", "viewer", *command), 6, needs, "has viewer")
    node = cli_json("nodes", "show", "n1")
    assert (node["name"], node["revoked"]) == ("n1", False)
    _, _ = add_context("operator", hub, pki.ca, "operator", root=tmp_path)
    one_line_error(
        run_cli("--context", "operator", "nodes", "sandbox", "n1", "--strict"),
        6,
        "SetSandbox needs the admin role",
        "has operator",
    )
    assert run_cli("--context", "operator", "journal", "fail", "n1").exit_code == 0
    assert run_cli("admin-tokens", "revoke", "viewer-viewer").exit_code == 0
    refused = one_line_error(
        run_cli("--context", "viewer", "nodes", "list"), 6, "context 'viewer'", "--token-file"
    )
    assert viewer_file.read_text().strip() not in refused  # never the token
    as_json = run_cli("--context", "viewer", "nodes", "list", "-o", "json")
    assert json.loads(as_json.stderr)["error"]["exit"] == 6


REMOTE_COMMANDS = [
    ["nodes", "sandbox", "n1", "--strict", "--dry-run"],
    ["nodes", "quota", "n1", "--bytes", "1GiB"],
    ["nodes", "revoke", "n1", "--dry-run"],
    ["nodes", "rotate-credential", "n1", "--dry-run"],
    ["nodes", "rename", "n1", "n9", "--dry-run"],
    ["nodes", "delete", "n1", "--dry-run"],
    ["nodes", "drain", "n1", "--timeout", "5s"],
    ["nodes", "uncordon", "n1"],
    ["journal", "fail", "n1", "--dry-run"],
    ["gc", "locks", "--dry-run"],
    ["gc", "mirrors", "--dry-run"],
    ["gc", "invites", "--dry-run"],
    ["gc", "tasks", "--older-than", "30d", "--dry-run"],
    ["gc", "audit", "--dry-run"],
    ["mirrors", "ls", "n1"],
    ["mirrors", "rm", "n1", "--dry-run"],
    ["hubs", "list"],
    ["audit", "list"],
    ["admin-tokens", "create", "--role", "viewer", "--name", "v2"],
    ["admin-tokens", "list"],
    ["admin-tokens", "revoke", "v2"],
    ["mesh", "status", "--check", "--min-hubs", "0", "--warn-offline", "0"],
]
IN_ONE_PROCESS = """
import json, sys
from typer.testing import CliRunner
from cortexctl.cli.app import app
codes = {}
for argv in json.loads(sys.argv[1]):
    result = CliRunner().invoke(app, ["--context", "hub", "-o", "json", *argv])
    codes[" ".join(argv)] = [result.exit_code, result.stderr[-300:]]
loaded = [m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "alembic")]
loaded += [m for m in sys.modules if m.startswith("cortexctl.store")]
print(json.dumps({"codes": codes, "loaded": sorted(loaded), "remote": "grpc" in sys.modules}))
"""


def test_remote_changes_load_no_sqlalchemy(tls_hub: Any) -> None:
    _hub, _pki, env = tls_hub
    add_node("n1")
    run = subprocess.run(
        [sys.executable, "-c", IN_ONE_PROCESS, json.dumps(REMOTE_COMMANDS)],
        env={**env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    done = json.loads(run.stdout)
    assert {k: v for k, v in done["codes"].items() if v[0] != 0} == {}
    assert done["remote"] and done["loaded"] == []


def test_watch_events_through_a_context(tls_hub: Any, tmp_path: Path) -> None:
    _hub, _pki, env = tls_hub
    out = tmp_path / "events.jsonl"
    args = ["--context", "hub", "mesh", "status", "--watch-events", "--interval", "0.2s"]
    with out.open("w") as sink:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "cortexctl", *args],
            env={**env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
        )

    def events() -> list[dict[str, Any]]:
        whole = out.read_text().split("\n")[:-1]  # a line still being written waits
        return [json.loads(line) for line in whole]

    try:
        wait_until(events, 30, "the first event")
        assert events()[0]["event"] == "watching"
        node_id = add_node("n1", permissive=False)
        wait_until(lambda: "node_added" in {e["event"] for e in events()}, 30, "the join")
        # A change seen apart from the join (one look may see both, and only the join).
        assert run_cli("nodes", "sandbox", "n1", "--permissive").exit_code == 0

        def seen() -> bool:
            kinds = {e["event"] for e in events()}
            audited = {e.get("action") for e in events() if e["event"] == "audit"}
            return "policy_changed" in kinds and "nodes.sandbox" in audited

        wait_until(seen, 30, "the policy change and its audit entry")
        changed = next(e for e in events() if e["event"] == "policy_changed")
        assert changed["node_id"] == node_id
    finally:
        watcher.send_signal(signal.SIGINT)
        code = watcher.wait(15 * DEADLINE_SCALE)
        stderr = watcher.stderr.read() if watcher.stderr else ""
    assert code == 0, stderr


def test_remote_nodes_list_loads_no_sqlalchemy(tls_hub: Any) -> None:
    _hub, _pki, env = tls_hub
    add_node("n1")
    run = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "cortexctl",
            "--context",
            "hub",
            "nodes",
            "list",
            "-o",
            "json",
        ],
        env={**env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert [n["name"] for n in json.loads(run.stdout)] == ["n1"]
    loaded = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if "|" in line}
    assert "grpc" in loaded and "cortexctl.cli.remote" in loaded  # it did go remote
    assert not {name for name in loaded if name.split(".")[0] in ("sqlalchemy", "alembic")}
    assert not {name for name in loaded if name.startswith("cortexctl.store")}


def test_tasks_run_through_a_context_on_a_real_agent(tls_hub: Any, tmp_path: Path) -> None:
    from tests.helpers import Mesh

    hub, pki, env = tls_hub
    mesh = Mesh(tmp_path, env, hub)
    token = mesh.invite("--name", "a1")
    mesh.start_agent("a1", token, "--ca-cert", str(pki.ca))
    assert run_cli("nodes", "sandbox", "a1", "--permissive").exit_code == 0
    try:
        done = run_cli(
            "--context", "hub", "tasks", "submit", "a1", "--wait", "--script", "echo hi; exit 3"
        )
        assert (done.exit_code, done.stdout) == (3, "hi\n"), done.stderr
        wait_until(
            lambda: cli_json("--context", "hub", "nodes", "show", "a1")["online"], 30, "a1 online"
        )
    finally:
        for agent in mesh.agents:
            agent.stop()
