"""Every user error is one line on stderr with the exit code from the table; no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cortexctl import __version__
from tests.helpers import cli_json, run_cli


def assert_one_line_error(result: object, code: int, fragment: str) -> None:
    exit_code = result.exit_code  # type: ignore[attr-defined]
    stderr = result.stderr  # type: ignore[attr-defined]
    assert exit_code == code, f"exit {exit_code}, stderr: {stderr}"
    assert fragment in stderr
    assert "Traceback" not in stderr


@pytest.mark.usefixtures("store_env")
class TestExitCodes:
    def test_unknown_node_is_not_found(self) -> None:
        assert_one_line_error(run_cli("nodes", "show", "ghost"), 3, "no node with id or name")

    def test_unknown_task_is_not_found(self) -> None:
        assert_one_line_error(run_cli("tasks", "show", "tk_nope"), 3, "no task")

    def test_sandbox_needs_nodes_or_all(self) -> None:
        assert_one_line_error(run_cli("nodes", "sandbox", "--strict"), 2, "--all")
        assert_one_line_error(
            run_cli("nodes", "sandbox", "x", "--strict", "--permissive"),
            2,
            "one of --strict or --permissive",
        )

    def test_bad_duration_is_a_usage_error_naming_the_format(self) -> None:
        assert_one_line_error(run_cli("invites", "create", "--ttl", "soon"), 2, "30s, 10m, 12h, 7d")

    def test_malformed_label_is_a_usage_error(self) -> None:
        assert_one_line_error(run_cli("invites", "create", "--label", "novalue"), 2, "KEY=VALUE")

    def test_bad_sandbox_mode_is_a_usage_error(self) -> None:
        assert_one_line_error(
            run_cli("invites", "create", "--sandbox", "lax"), 2, "strict or permissive"
        )

    def test_cancel_of_an_ended_task_is_a_conflict(self, tmp_path: Path) -> None:
        token = cli_json("invites", "create")["token"]
        from cortexctl.config import load_settings
        from cortexctl.core import nodes
        from cortexctl.store.engine import Store

        store = Store(load_settings().database_url)
        with store.session() as session:
            nodes.join_with_invite(
                session,
                token,
                hostname="h",
                requested_name="n1",
                agent_version="",
                labels={},
                capabilities=[],
            )
        store.dispose()
        rejected = run_cli("tasks", "submit", "n1", "--json", "--", "rm", "-rf", "/")
        assert rejected.exit_code == 1
        task_id = json.loads(rejected.stdout)["id"]
        assert_one_line_error(run_cli("tasks", "cancel", task_id), 5, "already ended rejected")

    def test_task_needs_exactly_one_of_argv_or_script(self) -> None:
        assert_one_line_error(run_cli("tasks", "submit", "x"), 2, "exactly one of")

    def test_invites_round_trip(self) -> None:
        created = cli_json("invites", "create", "--ttl", "2h", "--uses", "2", "--label", "a=b")
        assert set(created) >= {"id", "token", "expires_at"}
        listed = cli_json("invites", "list")
        assert [i["id"] for i in listed] == [created["id"]]
        assert created["token"] not in json.dumps(listed)
        cli_json("invites", "revoke", created["id"])
        assert cli_json("invites", "list") == []
        assert cli_json("invites", "list", "--all")[0]["state"] == "revoked"
        assert_one_line_error(run_cli("invites", "revoke", "inv_missing"), 3, "no invite")


def test_unreachable_database_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORTEX_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/x")
    assert_one_line_error(run_cli("nodes", "list"), 4, "127.0.0.1")


def test_unwritable_data_dir_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CORTEX_DATA_DIR", str(blocker / "sub"))
    assert_one_line_error(run_cli("invites", "create"), 4, "data directory")


def test_corrupt_database_is_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "cortex.db").write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("CORTEX_DATA_DIR", str(tmp_path))
    assert_one_line_error(run_cli("nodes", "list"), 4, "not a database")


def test_bad_database_url_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORTEX_DATABASE_URL", "nonsense")
    assert_one_line_error(run_cli("nodes", "list"), 2, "bad database URL")


def test_entry_points(tmp_path: Path) -> None:
    for command in (
        [sys.executable, "-m", "cortexctl", "--version"],
        [str(Path(sys.executable).with_name("cortexctl")), "--version"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"cortexctl {__version__}"
    usage = subprocess.run(
        [sys.executable, "-m", "cortexctl", "nodes", "--bogus"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert usage.returncode == 2
    assert usage.stderr == "error: no such option: --bogus; see 'cortexctl nodes --help'\n"


@pytest.mark.usefixtures("no_store_env")
def test_db_upgrade_and_current(database_url: str) -> None:
    from cortexctl.store.engine import SCHEMA_HEAD, known_revisions

    assert known_revisions()[0] == SCHEMA_HEAD
    if database_url.startswith("sqlite"):  # no file: a read command creates none
        assert_one_line_error(run_cli("db", "current"), 4, "no store at")
    else:  # a reachable database without the schema
        assert cli_json("db", "current")["current"] is None
    upgraded = cli_json("db", "upgrade")
    assert (upgraded["before"], upgraded["current"]) == (None, SCHEMA_HEAD)
    assert cli_json("db", "upgrade")["before"] == SCHEMA_HEAD  # idempotent
    assert cli_json("db", "current") | {"store": "", "store_url": ""} == {
        "current": SCHEMA_HEAD,
        "head": SCHEMA_HEAD,
        "up_to_date": True,
        "before": None,
        "store_url": "",
        "store": "",
    }


def readme_exit_codes() -> dict[int, str]:
    """The rows of the README's "Exit codes" table: {code: meaning}."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[int, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            rows[int(cells[0])] = cells[1]
    return rows


def test_readme_exit_codes_agree_with_the_one_table() -> None:
    from cortexctl.errors import COMMAND_EXIT_CODES, EXIT_CODES, WAIT_EXIT_CODES

    documented = readme_exit_codes()
    assert {row.code: row.meaning for row in EXIT_CODES}.items() <= documented.items()
    assert {row.code: row.meaning for row in WAIT_EXIT_CODES}.items() <= documented.items()
    assert [row.code for row in WAIT_EXIT_CODES] == list(COMMAND_EXIT_CODES)
    # Besides the table, the README may document only the codes one command defines for
    # itself (the documented exceptions in errors.py).
    extra = set(documented) - {row.code for row in EXIT_CODES}
    assert extra <= set(COMMAND_EXIT_CODES), f"codes not in cortexctl.errors: {sorted(extra)}"


def test_every_error_class_exits_with_a_code_from_the_table() -> None:
    from cortexctl import errors

    codes = {row.code for row in errors.EXIT_CODES}
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.CortexError)
    ]
    assert {cls.exit_code for cls in classes} <= codes
    for synonym in ("UsageError", "Aborted"):  # merged into InvalidArgument and Conflict
        assert not hasattr(errors, synonym)


def test_a_driver_error_outside_a_session_maps_like_one_inside() -> None:
    from sqlalchemy import exc

    from cortexctl.errors import Conflict, Unavailable
    from cortexctl.store.engine import store_error

    class Orig(Exception):
        pass

    busy = store_error(exc.OperationalError("x", {}, Orig("database is locked")), "sqlite:///a")
    assert isinstance(busy, Unavailable) and "busy" in str(busy)
    clash = store_error(exc.IntegrityError("x", {}, Orig("UNIQUE constraint failed")))
    assert isinstance(clash, Conflict)
    assert store_error(ValueError("not a store error")) is None
