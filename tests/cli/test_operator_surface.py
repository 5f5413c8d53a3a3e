"""The operator's surface: which store, the output contract, and the smaller frictions."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cortexctl.cli.globals import hoist
from tests.helpers import run_cli

ENTRY_POINT = str(Path(sys.executable).with_name("cortexctl"))


def root_command() -> Any:
    from typer.main import get_command

    from cortexctl.cli.app import app, polish_tree

    root = get_command(app)
    polish_tree(root)
    return root


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- one store, found the same way by everyone ----------------------------------------------


class TestWhichStore:
    def test_system_config_is_merged_below_the_users_key_by_key(self, tmp_path: Path) -> None:
        system = write(
            Path(os.environ["CORTEX_SYSTEM_CONFIG"]),
            f'[store]\ndata_dir = "{tmp_path / "srv"}"\n[hub]\nlisten = "0.0.0.0:1"\n',
        )
        user = write(
            tmp_path / "home" / ".config" / "cortexctl" / "config.toml",
            '[hub]\nlisten = "127.0.0.1:2"\n',
        )
        views = {v["key"]: v for v in json.loads(run_cli("config", "show", "--json").stdout)}
        assert (views["store.data_dir"]["source"], views["store.data_dir"]["origin"]) == (
            "file",
            str(system),
        )
        assert (views["hub.listen"]["value"], views["hub.listen"]["origin"]) == (
            "127.0.0.1:2",
            str(user),
        )
        table = run_cli("config", "show")
        assert re.search(rf"store\.data_dir +{tmp_path / 'srv'} +file {system}", table.stdout)
        assert f"store: {tmp_path / 'srv' / 'cortex.db'} (does not exist yet)" in table.stderr
        assert f"store.data_dir set by file {system}" in table.stderr

    def test_version_json_says_which_store_and_why(self, tmp_path: Path) -> None:
        shown = json.loads(run_cli("--version", "-o", "json", "--data-dir", str(tmp_path)).stdout)
        assert shown["output_schema"] >= 2
        assert shown["store"]["path"] == str(tmp_path / "cortex.db")
        assert (shown["store"]["key"], shown["store"]["source"]) == ("store.data_dir", "flag")
        env = json.loads(run_cli("-o", "json", "--version").stdout)
        assert env["store"]["source"] == "default"
        assert "user data dir" in env["store"]["reason"]
        assert run_cli("--version").stdout.startswith("cortexctl ")

    def test_a_read_command_never_creates_a_store(self, tmp_path: Path) -> None:
        typo = tmp_path / "no-such-dir"
        for command in (["nodes", "list"], ["gc", "locks"], ["mesh", "status"], ["db", "current"]):
            result = run_cli(*command, "--data-dir", str(typo))
            assert result.exit_code == 4, (command, result.stderr)
            assert result.stderr == (
                f"error: no store at {typo / 'cortex.db'} — is the hub using another data "
                "dir? (see `cortexctl config show`)\n"
            )
        assert not typo.exists()

    def test_invites_create_and_db_upgrade_start_a_store(self, tmp_path: Path) -> None:
        fresh = tmp_path / "fresh"
        assert run_cli("--data-dir", str(fresh), "invites", "create").exit_code == 0
        assert (fresh / "cortex.db").is_file()
        assert run_cli("nodes", "list", "--data-dir", str(fresh)).exit_code == 0
        other = tmp_path / "other"
        assert run_cli("db", "upgrade", "-q", "--data-dir", str(other)).exit_code == 0
        assert (other / "cortex.db").is_file()

    @pytest.mark.skipif(
        os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists(),
        reason="needs root and setpriv to run the CLI as another user",
    )
    def test_an_operator_outside_the_hubs_group_gets_one_line_not_a_traceback(
        self, tmp_path: Path
    ) -> None:
        # The systemd layout without store.group: /var/lib/cortexctl is the hub's, 0700.
        import tempfile

        with tempfile.TemporaryDirectory(dir="/tmp") as base_dir:
            base = Path(base_dir)
            base.chmod(0o755)
            data_dir = base / "lib" / "cortexctl"
            data_dir.mkdir(parents=True)
            (data_dir / "cortex.db").write_bytes(b"")
            data_dir.chmod(0o700)  # root's: `nobody` may not look inside
            system = write(base / "etc" / "config.toml", f'[store]\ndata_dir = "{data_dir}"\n')
            home = base / "home"
            home.mkdir(mode=0o777)
            home.chmod(0o777)
            env = {
                "PATH": os.environ["PATH"],
                "HOME": str(home),
                "CORTEX_SYSTEM_CONFIG": str(system),
                "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
            }
            setpriv = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
            result = subprocess.run(
                [*setpriv, sys.executable, "-m", "cortexctl", "nodes", "list"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
        assert result.returncode == 4, result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(
            f"error: cannot read the store at {data_dir / 'cortex.db'}: permission denied on "
            f"{data_dir} (owner root, group root)"
        ), result.stderr
        assert "store.group" in result.stderr and "group" in result.stderr

    def test_a_database_without_the_schema_is_no_store(self, pg_url: str) -> None:
        result = run_cli("nodes", "list", "--database-url", pg_url)
        assert result.exit_code == 4
        assert "no cortexctl schema" in result.stderr and "config show" in result.stderr


# --- the output contract -----------------------------------------------------------------


@pytest.mark.usefixtures("store_env")
class TestOutput:
    def test_global_options_work_before_or_after_the_command(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        before = run_cli("-o", "json", "nodes", "list")
        after = run_cli("nodes", "list", "-o", "json")
        alias = run_cli("nodes", "list", "--json")
        assert before.stdout == after.stdout == alias.stdout == "[]\n"
        assert run_cli("nodes", "list", "--output=yaml").stdout == "[]\n"
        monkeypatch.delenv("CORTEX_DATABASE_URL")  # else the URL wins over --data-dir
        moved = run_cli("nodes", "list", "--data-dir", str(tmp_path / "x"))
        assert moved.exit_code == 4 and "No such option" not in moved.stderr

    def test_the_mover_stops_at_a_double_dash_and_skips_option_values(self) -> None:
        root = root_command()
        import typer

        ctx = typer.Context(root, info_name="cortexctl")
        moved = hoist(root, ctx, ["tasks", "submit", "n1", "--json", "--", "echo", "--json", "-q"])
        assert moved.args == ["--json", "tasks", "submit", "n1", "--", "echo", "--json", "-q"]
        assert (moved.output, moved.quiet) == ("json", False)
        script = hoist(root, ctx, ["tasks", "submit", "n1", "--script", "-q", "-ojsonl"])
        assert script.args == ["--output", "jsonl", "tasks", "submit", "n1", "--script", "-q"]
        assert not script.quiet

    def test_jsonl_is_one_item_a_line_and_yaml_is_json_shaped(self) -> None:
        for _ in range(2):
            assert run_cli("invites", "create", "-q").exit_code == 0
        lines = run_cli("invites", "list", "-o", "jsonl").stdout.splitlines()
        assert len(lines) == 2 and all(json.loads(line)["state"] == "active" for line in lines)
        yaml = run_cli("invites", "list", "-o", "yaml").stdout
        assert yaml.startswith("- id: ") and '  state: "active"' in yaml

    def test_errors_are_json_on_stderr_with_a_machine_format(self) -> None:
        result = run_cli("nodes", "show", "ghost", "-o", "json")
        assert result.exit_code == 3 and result.stdout == ""
        error = json.loads(result.stderr)["error"]
        assert (error["code"], error["exit"]) == ("not_found", 3)
        assert "ghost" in error["message"]
        usage = run_cli("-o", "yaml", "nodes", "list", "--bogus")
        assert json.loads(usage.stderr)["error"]["code"] == "usage"
        assert run_cli("nodes", "show", "ghost").stderr.startswith("error: no node")

    def test_quiet_prints_nothing_on_success_and_still_reports_errors(self) -> None:
        for command in (
            ["invites", "create"],
            ["gc", "locks"],
            ["nodes", "list"],
            ["db", "upgrade"],
        ):
            for extra in (["-q"], ["--quiet", "-o", "json"]):
                result = run_cli(*command, *extra)
                assert result.exit_code == 0, (command, result.stderr)
                assert result.stdout == result.stderr == "", command
        failed = run_cli("nodes", "show", "ghost", "--quiet")
        assert failed.exit_code == 3 and failed.stderr.startswith("error: ")

    def test_bad_output_format_is_a_usage_error(self) -> None:
        result = run_cli("nodes", "list", "-o", "xml")
        assert result.exit_code == 2
        assert "table, wide, json, jsonl, yaml" in result.stderr


def test_yaml_emitter_quotes_every_string() -> None:
    from cortexctl.cli.render import to_yaml

    text = to_yaml({"a": [1, {"b": "no", "c": None}], "on": True, "empty": [], "d": {}})
    assert text == ('a:\n  - 1\n  - b: "no"\n    c: null\n"on": true\nempty: []\nd: {}\n')


# --- the smaller frictions ---------------------------------------------------------------


def help_records(root: Any, *, usage: bool = False) -> list[tuple[str, str, str]]:
    """(command path, names, help) of every option and argument; with ``usage``, one
    (command path, usage line, "") a command instead."""
    import typer

    found: list[tuple[str, str, str]] = []

    def walk(command: Any, ctx: Any) -> None:
        if usage:
            found.append((ctx.command_path, " ".join(command.collect_usage_pieces(ctx)), ""))
        else:
            for param in command.params:
                record = param.get_help_record(ctx)
                if record is not None:
                    found.append((ctx.command_path, record[0], record[1]))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, typer.Context(sub, info_name=name, parent=ctx))

    walk(root, typer.Context(root, info_name="cortexctl"))
    return found


# What typer prints around a metavar that is not a word: {NODE}, [[PATH]...]..., {ID...}...
NOT_A_WORD = re.compile(r"<(str|int|list|path|float)|[{}]|\[\[|\]\.\.\.\]|\.\.\.\]?\.\.\.")


def test_metavars_read_as_words() -> None:
    root = root_command()
    for path, names, _ in help_records(root):
        assert "<" not in names and not NOT_A_WORD.search(names), f"{path}: {names}"
    usages = dict((path, line) for path, line, _ in help_records(root, usage=True))
    for path, line in usages.items():
        assert not NOT_A_WORD.search(line), f"{path}: {line}"
    assert usages["cortexctl mirrors rm"] == "[OPTIONS] NODE [PATH...]"
    assert usages["cortexctl invites revoke"] == "[OPTIONS] ID..."
    assert usages["cortexctl nodes revoke"] == "[OPTIONS] [NODE]"
    shown = run_cli("nodes", "show", "--help").stdout
    assert shown.startswith("Usage: cortexctl nodes show [OPTIONS] NODE\n"), shown
    assert "<str>" not in run_cli("agent", "sync", "--help").stdout
    man = (Path(__file__).resolve().parents[2] / "man").glob("*.1")
    for page in man:
        text = page.read_text()
        synopsis = text.split(".SH SYNOPSIS", 1)[-1].split(".SH", 1)[0]
        assert not NOT_A_WORD.search(synopsis), f"{page.name}: {synopsis}"
        assert not re.search(r"<(str|int|list|path|float)", text), page.name


def test_env_vars_are_shown_once() -> None:
    for path, names, text in help_records(root_command()):
        for variable in set(re.findall(r"CORTEX_[A-Z_]+", text)):
            assert text.count(variable) == 1, f"{path} {names}: {text}"
            assert f"[env: {variable}]" in text
        assert "env var:" not in text, f"{path} {names}"


def test_every_command_lists_the_global_options_in_its_help() -> None:
    shown = run_cli("gc", "locks", "--help").stdout
    assert "Global options, before or after the command" in " ".join(shown.split())


def test_a_usage_error_is_one_line_with_a_hint() -> None:
    result = run_cli("nodes", "list", "--bogus")
    assert result.exit_code == 2
    assert result.stderr == "error: no such option: --bogus; see 'cortexctl nodes list --help'\n"
    missing = run_cli("tasks", "show")
    assert missing.exit_code == 2 and len(missing.stderr.splitlines()) == 1
    assert "see 'cortexctl tasks show --help'" in missing.stderr


class TestSettingsValidatedOnLoad:
    def test_config_set_refuses_zero_workers(self, tmp_path: Path) -> None:
        result = run_cli("config", "set", "store.workers", "0")
        assert result.exit_code == 2
        assert "store.workers" in result.stderr and "at least 1" in result.stderr
        assert not (tmp_path / "home" / ".config" / "cortexctl" / "config.toml").exists()

    @pytest.mark.parametrize(
        "line",
        ["[store]\nworkers = 0", '[hub]\nheartbeat_interval = "0s"', '[hub]\nlisten = "nowhere"'],
    )
    def test_serve_reports_a_bad_setting_in_one_line(self, line: str, tmp_path: Path) -> None:
        config = write(tmp_path / "bad.toml", line + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORTEX_")}
        env |= {"CORTEX_CONFIG": str(config), "CORTEX_DATA_DIR": str(tmp_path / "data")}
        env["CORTEX_SYSTEM_CONFIG"] = os.environ["CORTEX_SYSTEM_CONFIG"]
        done = subprocess.run(
            [ENTRY_POINT, "serve", "--listen", "127.0.0.1:0"]
            if "listen" not in line
            else [ENTRY_POINT, "serve"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"error: file {config}: bad value for ")
        assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
        assert not (tmp_path / "data").exists()


@pytest.mark.usefixtures("store_env")
def test_durations_take_compound_units_and_refuse_a_bare_number() -> None:
    bare = run_cli("invites", "create", "--ttl", "10")
    assert bare.exit_code == 2
    assert "a bare number is ambiguous; give a unit, e.g. 10s or 10m" in bare.stderr
    created = json.loads(run_cli("invites", "create", "--ttl", "1h30m", "-o", "json").stdout)
    listed = json.loads(run_cli("invites", "list", "-o", "json").stdout)
    (invite,) = listed
    from datetime import datetime

    lifetime = datetime.fromisoformat(invite["expires_at"]) - datetime.fromisoformat(
        invite["created_at"]
    )
    assert lifetime.total_seconds() == pytest.approx(5400, abs=2)
    assert created["id"] == invite["id"]


def on_a_terminal(*args: str, columns: int) -> str:
    """What a command prints on a pseudo-terminal ``columns`` wide (stdout and stderr)."""
    import fcntl
    import pty
    import struct
    import termios

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cortexctl", *args],
        env=env | {"COLUMNS": str(columns), "TERM": "dumb"},
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        close_fds=True,
    )
    os.close(secondary)
    seen = b""
    while True:  # until the command closes its end (EIO on Linux)
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert proc.wait(60) == 0, seen
    return seen.decode().replace("\r\n", "\n")


@pytest.mark.usefixtures("store_env")
def test_wide_output_never_cuts_on_a_narrow_terminal() -> None:
    from tests.helpers import add_node

    add_node("build-server-01", "zone=eu-west", "gpu=a100")
    wide = on_a_terminal("nodes", "list", "-o", "wide", columns=60)
    for whole in ("LABELS", "POLICY", "AGENT", "zone=eu-west,gpu=a100", "build-server-01"):
        assert whole in wide, wide
    assert "…" not in wide
    header = next(line for line in wide.splitlines() if line.startswith("NAME"))
    assert len(header) > 60 and header.rstrip().endswith("AGENT")
    # Table mode cuts cells to an ellipsis, but no column away (ids stay whole).
    table = on_a_terminal("nodes", "list", columns=40)
    header = next(line for line in table.splitlines() if line.startswith("NAME"))
    assert header.split()[-2:] == ["LAST", "HE…"], table
    assert re.search(r"nd_[0-9a-f]{12} +offline +permiss… +unknown +h +-", table), table


def test_narrow_tables_end_long_cells_in_an_ellipsis_and_keep_ids_whole() -> None:
    from rich.console import Console

    from cortexctl.cli import render

    node_id = "nd_0123456789abcdef"
    rows = [
        ("build-server-01", node_id, "offline", "permissive (default)", "h" * 60, "3d ago"),
        ("laptop", "nd_fedcba9876543210", "online", "strict", "laptop.local", "1s ago"),
    ]
    table = render.build_table(
        ["NAME", "ID", "STATUS", "SANDBOX", "HOSTNAME", "LAST HEARTBEAT"], rows, width=80
    )
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(table)
    text = out.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    for whole in (node_id, "nd_fedcba9876543210", "build-server-01", "offline", "online"):
        assert whole in text
    assert "…" in text
