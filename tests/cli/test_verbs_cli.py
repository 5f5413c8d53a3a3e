"""The everyday verbs from the command line: selectors, --yes/--dry-run, delete, rename,
cordon, logs, wait exit codes and Ctrl-C, mesh status --check, db backup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cortexctl.cli import render
from tests.helpers import Cli, add_node, cli_json, run_cli

pytestmark = pytest.mark.usefixtures("store_env")


def submit(*args: str, cli: Any = run_cli) -> Any:
    result = cli("tasks", "submit", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def one_line_error(result: Any, code: int, text: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and text in lines[-1], result.stderr


def test_label_selectors_filter_nodes_and_tasks(cli: Cli) -> None:
    add_node("eu-1", "zone=eu")
    add_node("eu-2", "zone=eu", "gpu=a100")
    add_node("us-1", "zone=us")
    assert [n["name"] for n in cli.json("nodes", "list", "-l", "zone=eu")] == ["eu-1", "eu-2"]
    assert [n["name"] for n in cli.json("nodes", "list", "-l", "zone=eu,!gpu")] == ["eu-1"]
    assert [n["name"] for n in cli.json("nodes", "list", "-l", "zone!=eu")] == ["us-1"]
    assert cli("nodes", "list", "-l", "nope=1").stdout.strip() == "no nodes match the selector"
    one_line_error(cli("nodes", "list", "-l", "bad key"), 2, "bad selector")

    fan = submit("-l", "zone=eu", "--", "echo", "hi", cli=cli)
    assert isinstance(fan, list)
    assert sorted(t["node_name"] for t in fan) == ["eu-1", "eu-2"]
    assert {t["state"] for t in fan} == {"pending"}
    listed = cli.json("tasks", "list", "-l", "gpu")
    assert [t["node_name"] for t in listed] == ["eu-2"]
    human = cli("tasks", "submit", "-l", "zone=eu", "--", "true")
    assert human.exit_code == 0
    assert "submitted 2 task(s) to 2 node(s) matching -l zone=eu" in human.stderr
    one_line_error(
        cli("tasks", "submit", "eu-1", "-l", "zone=eu", "--script", "true"), 2, "not both"
    )
    one_line_error(cli("tasks", "submit", "--script", "true"), 2, "name one NODE")


def test_fan_out_skips_cordoned_nodes_with_a_summary(cli: Cli) -> None:
    add_node("a", "role=build")
    add_node("b", "role=build")
    assert run_cli("nodes", "cordon", "b").exit_code == 0
    fan = submit("-l", "role=build", "--", "true", cli=cli)
    assert [(t["node_name"], t["state"]) for t in fan] == [("a", "pending"), ("b", "skipped")]
    assert "cordoned" in fan[1]["error"]


def test_destructive_commands_need_yes_off_a_terminal(cli: Cli) -> None:
    add_node("n1")
    one_line_error(cli("nodes", "revoke", "n1"), 2, "add --yes")
    assert cli.json("nodes", "show", "n1")["revoked"] is False
    one_line_error(cli("nodes", "rotate-credential", "n1"), 2, "add --yes")
    one_line_error(cli("nodes", "sandbox", "--all", "--strict"), 2, "add --yes")
    # A single named node's sandbox is not a selector change: no question.
    assert cli("nodes", "sandbox", "n1", "--strict").exit_code == 0
    # The cron admin tasks never ask.
    assert cli("journal", "fail", "n1").exit_code == 0
    assert cli("gc", "tasks", "--older-than", "30d").exit_code == 0
    one_line_error(cli("nodes", "delete", "n1"), 2, "add --yes")
    assert cli.json("nodes", "show", "n1")["name"] == "n1"


def test_a_person_at_a_terminal_is_asked(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    add_node("n1")
    monkeypatch.setattr(render, "is_interactive", lambda: True)
    declined = cli("nodes", "revoke", "n1", input="n\n")
    assert declined.exit_code == 1
    assert "revoke n1" in declined.stderr and "[y/N]" in declined.stderr
    assert "error: aborted; nothing changed" in declined.stderr
    assert cli.json("nodes", "show", "n1")["revoked"] is False
    accepted = cli("nodes", "revoke", "n1", input="y\n")
    assert accepted.exit_code == 0 and "revoked node n1" in accepted.stdout
    assert cli.json("nodes", "show", "n1")["revoked"] is True


def test_dry_runs_change_nothing(cli: Cli) -> None:
    add_node("n1", "zone=eu")
    task = submit("n1", "--", "true", cli=cli)
    revoked = cli.json("nodes", "revoke", "n1", "--dry-run")
    assert revoked == {
        "id": revoked["id"],
        "name": "n1",
        "revoked": False,
        "failed_tasks": 1,
        "dry_run": True,
    }
    sandbox = cli.json("nodes", "sandbox", "-l", "zone=eu", "--strict", "--dry-run")
    assert sandbox[0]["sandbox"] == "strict"
    renamed = cli.json("nodes", "rename", "n1", "n9", "--dry-run")
    assert renamed["name"] == "n9" and renamed["dry_run"] is True
    assert cli.json("nodes", "rotate-credential", "n1", "--dry-run")["dry_run"] is True
    assert cli.json("tasks", "cancel", task["id"], "--dry-run")["dry_run"] is True
    assert cli.json("journal", "fail", "n1", "--dry-run") == {
        "node_id": revoked["id"],
        "node_name": "n1",
        "failed_tasks": 1,
        "failed": 1,  # the old name, kept for one release (CHANGELOG.md)
        "dry_run": True,
    }
    assert cli.json("nodes", "cordon", "n1", "--dry-run")["dry_run"] is True
    deleted = cli.json("nodes", "delete", "n1", "--dry-run")
    assert deleted["deleted_tasks"] == 1 and deleted["dry_run"] is True
    node = cli.json("nodes", "show", "n1")
    assert (node["revoked"], node["sandbox"], node["cordoned"]) == (False, "permissive", False)
    assert cli.json("tasks", "show", task["id"])["state"] == "pending"


def test_delete_rename_and_a_rejoined_name(cli: Cli, data_dir: Path) -> None:
    first = add_node("laptop")
    second = add_node("laptop-2")  # a re-join under another name (never suffixed)
    one_line_error(cli("nodes", "rename", "laptop-2", "laptop"), 5, "taken by node")
    assert cli("nodes", "revoke", "laptop", "--yes").exit_code == 0
    mirror = data_dir / "mirrors" / first
    mirror.mkdir(parents=True)
    (mirror / "f").write_text("x")
    deleted = cli.json("nodes", "delete", "laptop", "--yes")
    assert (deleted["id"], deleted["mirror_state"], deleted["mirror_files"]) == (
        first,
        "removed",
        1,
    )
    assert not mirror.exists()
    renamed = cli.json("nodes", "rename", "laptop-2", "laptop")
    assert (renamed["old_name"], renamed["name"]) == ("laptop-2", "laptop")
    assert cli.json("nodes", "show", "laptop")["id"] == second
    one_line_error(cli("nodes", "delete", first, "--yes"), 3, "no node")


def test_short_id_prefixes_and_ambiguity(cli: Cli) -> None:
    node_id = add_node("n1")
    assert cli.json("nodes", "show", node_id[:8])["id"] == node_id
    assert cli.json("nodes", "show", node_id[3:10])["id"] == node_id
    task = submit("n1", "--", "true", cli=cli)
    assert cli.json("tasks", "show", task["id"][3:9])["id"] == task["id"]
    # Two ids that share a prefix, made so rather than left to chance (random ids rarely
    # share the three characters a prefix needs).
    first, second = (submit("n1", "--", "true")["id"] for _ in range(2))
    _rename_task(first, "tk_zzz1" + first[7:])
    _rename_task(second, "tk_zzz2" + second[7:])
    one_line_error(cli("tasks", "show", "zzz"), 2, "matches 2 tasks")
    assert cli.json("tasks", "show", "zzz2")["id"] == "tk_zzz2" + second[7:]


def _rename_task(task_id: str, new_id: str) -> None:
    from sqlalchemy import update

    from cortexctl.config import load_settings
    from cortexctl.store.engine import Store
    from cortexctl.store.models import Task

    store = Store(load_settings().database_url)
    try:
        with store.session(write=True) as session:
            session.execute(update(Task).where(Task.id == task_id).values(id=new_id))
    finally:
        store.dispose()


def test_cordoned_node_refuses_submissions_until_uncordoned(cli: Cli) -> None:
    add_node("n1")
    assert cli.json("nodes", "cordon", "n1", "--dry-run")["dry_run"] is True
    assert cli.json("nodes", "show", "n1")["cordoned"] is False
    assert "takes no new tasks" in cli("nodes", "cordon", "n1").stdout
    assert cli.json("nodes", "show", "n1")["cordoned"] is True
    assert "cordoned" in cli("nodes", "list").stdout
    one_line_error(cli("tasks", "submit", "n1", "--", "true"), 5, "nodes uncordon n1")
    assert cli("nodes", "uncordon", "n1").exit_code == 0
    assert submit("n1", "--", "true", cli=cli)["state"] == "pending"


def test_drain_of_an_idle_node_cordons_and_returns(cli: Cli) -> None:
    add_node("n1")
    drained = cli.json("nodes", "drain", "n1", "--timeout", "5s")
    assert drained["cordoned"] is True
    assert cli.json("nodes", "show", "n1")["cordoned"] is True


def _finish(task_id: str, state: str, exit_code: int | None = None, **out: bytes) -> None:
    from cortexctl.config import load_settings
    from cortexctl.core import clock
    from cortexctl.store.engine import Store
    from cortexctl.store.models import Task

    store = Store(load_settings().database_url)
    try:
        with store.session(write=True) as session:
            row = session.get(Task, task_id)
            assert row is not None
            row.state, row.exit_code = state, exit_code
            row.stdout, row.stderr = out.get("stdout", b""), out.get("stderr", b"")
            if state in ("succeeded", "failed", "timed_out", "cancelled", "expired"):
                row.finished_at = clock.now()
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("state", "exit_code", "expected"),
    [("succeeded", 0, 0), ("failed", 3, 3), ("failed", None, 125), ("cancelled", None, 123)],
)
def test_tasks_wait_exits_with_the_tasks_own_code(
    cli: Cli, state: str, exit_code: int | None, expected: int
) -> None:
    add_node("n1")
    task = submit("n1", "--", "true", cli=cli)
    _finish(task["id"], state, exit_code, stdout=b"out\n")
    done = cli("tasks", "wait", task["id"][:10])
    assert done.exit_code == expected, done.stderr
    assert done.stdout == "out\n"


def test_wait_timeouts_exit_120_and_leave_the_task(cli: Cli) -> None:
    add_node("n1")
    task = submit("n1", "--", "true", cli=cli)
    waited = cli("tasks", "wait", task["id"], "--timeout", "0.3s")
    one_line_error(waited, 120, "still not ended after 0.3s")
    submitted = cli("tasks", "submit", "n1", "--wait", "--wait-timeout", "0.3s", "--", "true")
    assert submitted.exit_code == 120
    assert submitted.stderr.startswith("task tk_")  # the id before the wait
    assert cli.json("tasks", "show", task["id"])["state"] == "pending"
    one_line_error(cli("tasks", "submit", "n1", "--wait-timeout", "1s", "--", "true"), 2, "")


def test_wait_on_a_rejected_or_missing_task_gets_its_own_code(cli: Cli) -> None:
    add_node("n1", permissive=False)
    rejected = cli("tasks", "submit", "n1", "--wait", "--", "rm", "-rf", "/")
    one_line_error(rejected, 122, "rejected")
    plain = cli("tasks", "submit", "n1", "--", "rm", "-rf", "/")
    one_line_error(plain, 1, "rejected")
    one_line_error(cli("tasks", "wait", "tk_nothing"), 125, "no task")
    one_line_error(cli("tasks", "submit", "ghost", "--wait", "--", "true"), 125, "no node")


def test_expire_after_and_the_hub_default(monkeypatch: pytest.MonkeyPatch) -> None:
    add_node("n1")
    task = submit("n1", "--expire-after", "10m", "--", "true")
    shown = cli_json("tasks", "show", task["id"])
    assert shown["expires_at"] is not None
    assert cli_json("tasks", "show", submit("n1", "--", "true")["id"])["expires_at"] is None
    monkeypatch.setenv("CORTEX_TASK_EXPIRY", "1h")
    defaulted = cli_json("tasks", "show", submit("n1", "--", "true")["id"])
    assert defaulted["expires_at"] is not None
    one_line_error(run_cli("tasks", "submit", "n1", "--expire-after", "0s", "--", "true"), 2, "")


def test_gc_tasks_expires_overdue_queued_tasks() -> None:
    # Local only: a hub's own task_expiry job (every 5 s) would expire the task first.
    from cortexctl.config import load_settings
    from cortexctl.core import clock
    from cortexctl.store.engine import Store
    from cortexctl.store.models import Task

    add_node("n1")
    task = submit("n1", "--expire-after", "1h", "--", "true")
    store = Store(load_settings().database_url)
    try:
        with store.session(write=True) as session:
            row = session.get(Task, task["id"])
            assert row is not None
            row.expires_at = clock.now()
    finally:
        store.dispose()
    assert cli_json("gc", "tasks", "--older-than", "30d", "--dry-run")["expired"] == [task["id"]]
    assert cli_json("tasks", "show", task["id"])["state"] == "pending"
    human = run_cli("gc", "tasks", "--older-than", "30d")
    assert "expired 1 queued task(s)" in human.stdout
    assert cli_json("tasks", "show", task["id"])["state"] == "expired"
    assert run_cli("tasks", "wait", task["id"]).exit_code == 124


def test_ctrl_c_during_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    from cortexctl.cli import tasks

    add_node("n1")

    def interrupted(*_args: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(tasks, "wait_for_tasks", interrupted)
    off_tty = run_cli("tasks", "submit", "n1", "--wait", "--", "true")
    assert off_tty.exit_code == 130
    assert "keeps running" in off_tty.stderr and "cortexctl tasks cancel tk_" in off_tty.stderr
    assert cli_json("tasks", "list")[0]["state"] == "pending"

    monkeypatch.setattr(render, "is_interactive", lambda: True)
    asked = run_cli("tasks", "submit", "n1", "--wait", "--", "true", input="y\n")
    assert asked.exit_code == 130
    assert "cancel tk_" in asked.stderr and "cancelled tk_" in asked.stderr
    assert cli_json("tasks", "list")[0]["state"] == "cancelled"


def test_tasks_logs_prints_each_stream_to_its_own(cli: Cli) -> None:
    add_node("n1")
    task = submit("n1", "--", "true", cli=cli)
    _finish(task["id"], "succeeded", 0, stdout=b"hello\n", stderr=b"warn\n")
    logs = cli("tasks", "logs", task["id"])
    assert (logs.exit_code, logs.stdout, logs.stderr) == (0, "hello\n", "warn\n")
    followed = cli("tasks", "logs", task["id"], "-f")
    assert followed.stdout == "hello\n"
    as_json = cli.json("tasks", "logs", task["id"])
    assert (as_json["stdout"], as_json["ended"]) == ("hello\n", True)


def test_mesh_status_check_is_one_line_with_nagios_codes() -> None:
    add_node("n1")
    no_hub = run_cli("mesh", "status", "--check")
    assert no_hub.exit_code == 2
    assert no_hub.stdout.count("\n") == 1 and no_hub.stdout.startswith("CORTEX CRITICAL - ")
    warned = run_cli("mesh", "status", "--check", "--min-hubs", "0")
    assert warned.exit_code == 1 and "1 node(s) offline or stale: n1" in warned.stdout
    ok = run_cli("mesh", "status", "--check", "--min-hubs", "0", "--warn-offline", "2")
    assert ok.exit_code == 0 and ok.stdout.startswith("CORTEX OK - 0/1 nodes online")
    checked = run_cli("mesh", "status", "--check", "--min-hubs", "0", "--json")
    shown = json.loads(checked.stdout)
    assert shown["exit_code"] == shown["status"] == 1  # `status`: the old name, one release
    one_line_error(run_cli("mesh", "status", "--check", "--follow"), 2, "--check")


def test_mesh_status_check_without_a_store_is_still_a_status_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CORTEX_DATABASE_URL")  # the store_env's: --data-dir must choose
    missing = tmp_path / "no-such-dir"
    none = run_cli("mesh", "status", "--check", "--data-dir", str(missing))
    assert none.exit_code == 2, none.stderr  # CRITICAL, not the table's 4
    assert none.stdout == (
        f"CORTEX CRITICAL - no store at {missing / 'cortex.db'} — is the hub using another "
        "data dir? (see `cortexctl config show`)\n"
    )
    assert none.stderr == "" and not missing.exists()
    shown = json.loads(
        run_cli("mesh", "status", "--check", "--data-dir", str(missing), "--json").stdout
    )
    assert (shown["exit_code"], shown["label"]) == (2, "CRITICAL")
    url = "postgresql+psycopg://nobody@127.0.0.1:1/x"
    down = run_cli("mesh", "status", "--check", "--database-url", url)
    assert down.exit_code == 3, down.stderr  # UNKNOWN: nothing could be judged
    assert down.stdout.startswith("CORTEX UNKNOWN - ") and down.stdout.count("\n") == 1


def test_db_backup(tmp_path: Path) -> None:
    import os

    add_node("n1")
    if not os.environ.get("CORTEX_DATABASE_URL", "").startswith("sqlite"):
        one_line_error(run_cli("db", "backup", str(tmp_path / "b.db")), 2, "pg_dump")
        return
    backed = cli_json("db", "backup", str(tmp_path / "b.db"))
    assert backed["size_bytes"] == backed["bytes"] > 0 and Path(backed["path"]).is_file()
    one_line_error(run_cli("db", "backup", str(tmp_path / "b.db")), 5, "--force")
    assert run_cli("db", "backup", str(tmp_path / "b.db"), "--force", "--quiet").stdout == ""


def test_quota_mirrors_hubs_audit_and_admin_tokens(cli: Cli) -> None:
    add_node("n1")
    usage = cli.json("nodes", "quota", "n1", "--bytes", "1GiB", "--files", "10")
    assert (usage["quota_bytes"], usage["quota_files"], usage["quota_configured"]) == (
        1024**3,
        10,
        True,
    )
    cleared = cli("nodes", "quota", "n1", "--clear")
    assert cleared.exit_code == 0 and "node n1 (" in cleared.stderr + cleared.stdout
    assert cli.json("nodes", "show", "n1")["mirror"]["quota_configured"] is False
    listing = cli.json("mirrors", "ls", "n1")
    assert (listing["node_name"], listing["files"]) == ("n1", [])
    assert "no files in the mirror of n1" in cli("mirrors", "ls", "n1").stdout
    assert "nothing to remove" in cli("mirrors", "rm", "n1", "--yes").stdout
    one_line_error(cli("mirrors", "ls", "ghost"), 3, "no node")
    # Through a context the hub serving it is a member; on the store alone, none runs.
    assert len(cli.json("hubs", "list")) == (1 if cli.remote else 0)
    created = cli.json("admin-tokens", "create", "--role", "viewer", "--name", "ci")
    assert created["token"].startswith("cortex-admin.") and created["role"] == "viewer"
    assert "ci" in [t["name"] for t in cli.json("admin-tokens", "list")]
    assert [t["state"] for t in cli.json("admin-tokens", "revoke", "ci")] == ["revoked"]
    assert "ci" not in [t["name"] for t in cli.json("admin-tokens", "list")]
    kind = "token" if cli.remote else "local"
    mine = [e for e in cli.json("audit", "list", "--since", "1h") if e["actor_kind"] == kind]
    assert {"admin_tokens.create", "admin_tokens.revoke"} <= {e["action"] for e in mine}, mine
    assert created["token"] not in json.dumps(cli.json("audit", "list"))


def test_invite_and_admin_token_revoke_take_unique_id_prefixes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cortexctl.core import admin_tokens, invites

    ids = iter(["inv_0472aa000001", "inv_0472bb000002", "inv_9f00cc000003"])
    monkeypatch.setattr(invites, "new_id", lambda prefix: next(ids))
    for _ in range(3):
        cli_json("invites", "create")
    ambiguous = run_cli("invites", "revoke", "0472")
    one_line_error(ambiguous, 2, "'0472' matches 2 invites: inv_0472aa000001, inv_0472bb000002")
    assert run_cli("invites", "revoke", "9f").exit_code == 3  # under 3 characters: no prefix
    [revoked] = cli_json("invites", "revoke", "0472b")  # without inv_, as for tasks
    assert (revoked["id"], revoked["state"], revoked["dry_run"]) == (
        "inv_0472bb000002",
        "revoked",
        False,
    )
    assert cli_json("invites", "revoke", "inv_9f0")[0]["id"] == "inv_9f00cc000003"

    monkeypatch.setattr(admin_tokens, "new_id", lambda prefix: "adm_e05b00000001")
    cli_json("admin-tokens", "create", "--role", "viewer", "--name", "ci")
    [token] = cli_json("admin-tokens", "revoke", "adm_e05b")
    assert (token["name"], token["state"]) == ("ci", "revoked")


def test_revoke_quota_and_drain_dry_runs_change_nothing() -> None:
    invite = cli_json("invites", "create")["id"]
    [plan] = cli_json("invites", "revoke", invite, "--dry-run")
    assert (plan["id"], plan["state"], plan["revoked"], plan["dry_run"]) == (
        invite,
        "revoked",
        True,
        True,
    )
    human = run_cli("invites", "revoke", invite, "--dry-run")
    assert human.stdout == f"would revoke invite {invite}\n"
    assert "dry run: nothing changed" in human.stderr
    assert cli_json("invites", "list")[0]["state"] == "active"

    cli_json("admin-tokens", "create", "--role", "viewer", "--name", "ci")
    [token] = cli_json("admin-tokens", "revoke", "ci", "--dry-run")
    assert (token["state"], token["dry_run"]) == ("revoked", True)
    assert [t["state"] for t in cli_json("admin-tokens", "list")] == ["active"]

    add_node("n1")
    before = cli_json("nodes", "quota", "n1", "--bytes", "1MiB", "--files", "10")
    assert (before["quota_bytes"], before["quota_files"], before["dry_run"]) == (1048576, 10, False)
    plan = cli_json("nodes", "quota", "n1", "--files", "99", "--dry-run")
    assert (plan["quota_bytes"], plan["quota_files"], plan["dry_run"]) == (1048576, 99, True)
    assert cli_json("nodes", "quota", "n1", "--clear", "--dry-run")["quota_configured"] is False
    again = cli_json("nodes", "quota", "n1", "--files", "10")  # unchanged by the dry runs
    assert (again["quota_bytes"], again["quota_files"]) == (1048576, 10)

    drain = run_cli("nodes", "drain", "n1", "--dry-run")
    assert drain.exit_code == 0 and "would cordon node n1" in drain.stdout
    assert cli_json("nodes", "drain", "n1", "--dry-run")["dry_run"] is True
    assert cli_json("nodes", "show", "n1")["cordoned"] is False
    audited = {e["action"] for e in cli_json("audit", "list")}
    assert not audited & {"invites.revoke", "admin_tokens.revoke", "nodes.cordon"}


def test_json_errors_of_a_wait_carry_the_waits_own_code_names() -> None:
    add_node("n1")  # no agent: the task stays pending
    task = submit("n1", "--", "true")
    timed_out = run_cli("tasks", "wait", task["id"], "--timeout", "10ms", "-o", "json")
    assert timed_out.exit_code == 120
    error = json.loads(timed_out.stderr)["error"]
    assert (error["code"], error["exit"]) == ("wait_timed_out", 120)
    lost = run_cli("tasks", "wait", "tk_nosuchtask", "-o", "json")
    assert lost.exit_code == 125
    assert json.loads(lost.stderr)["error"]["code"] == "task_lost"
