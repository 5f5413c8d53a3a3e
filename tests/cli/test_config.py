"""`cortexctl config path|show|get|set|init` and what a bad config file does to any command."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from cortexctl.config import SETTINGS, config_template, load_settings
from tests.helpers import run_cli


@pytest.fixture
def user_config(isolated_env: Path) -> Path:
    """Where the user's config file lives in the isolated environment (not created)."""
    return isolated_env / ".config" / "cortexctl" / "config.toml"


def assert_one_line_error(result: object, code: int, *fragments: str) -> None:
    exit_code = result.exit_code  # type: ignore[attr-defined]
    stderr = result.stderr  # type: ignore[attr-defined]
    assert exit_code == code, f"exit {exit_code}, stderr: {stderr}"
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    for fragment in fragments:
        assert fragment in stderr


def ok(*args: str) -> str:
    result = run_cli(*args)
    assert result.exit_code == 0, f"{args} exited {result.exit_code}: {result.stderr}"
    return result.stdout


class TestPath:
    def test_names_the_user_file_that_would_be_created_and_the_search_order(
        self, user_config: Path
    ) -> None:
        result = run_cli("config", "path")
        assert result.exit_code == 0
        assert result.stdout == f"{user_config}\n"  # alone on stdout, for $(...)
        system = os.environ["CORTEX_SYSTEM_CONFIG"]
        assert f"1. {user_config} (missing)" in result.stderr
        assert f"2. {system} (missing)" in result.stderr
        assert "each above the next, merged key by key" in result.stderr
        assert "first file that exists" not in result.stderr
        shown = json.loads(ok("config", "path", "--json"))
        assert shown["path"] == str(user_config)
        assert shown["exists"] is False
        assert [entry["path"] for entry in shown["search_order"]] == [str(user_config), system]

    def test_an_explicit_file_replaces_the_users_and_keeps_the_system_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        chosen = tmp_path / "elsewhere.toml"
        shown = json.loads(ok("--config", str(chosen), "config", "path", "--json"))
        assert shown["path"] == str(chosen)
        assert shown["search_order"] == [
            {"path": str(chosen), "exists": False},
            {"path": os.environ["CORTEX_SYSTEM_CONFIG"], "exists": False},
        ]
        monkeypatch.setenv("CORTEX_CONFIG", str(chosen))
        assert ok("config", "path") == f"{chosen}\n"
        told = run_cli("config", "path").stderr
        assert "instead of your own file" in told and "no other file is read" not in told
        assert f"2. {os.environ['CORTEX_SYSTEM_CONFIG']} (missing)" in told


class TestShowAndGet:
    def test_every_setting_with_its_source(
        self, user_config: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        user_config.parent.mkdir(parents=True)
        user_config.write_text('[sync]\nlock_wait = "9s"\n')
        monkeypatch.setenv("CORTEX_LISTEN", "127.0.0.1:7")
        views = json.loads(ok("--data-dir", "/srv/cortex", "config", "show", "--json"))
        assert [view["key"] for view in views] == [setting.key for setting in SETTINGS]
        by_key = {view["key"]: view for view in views}
        assert by_key["store.data_dir"] == {
            "key": "store.data_dir",
            "value": "/srv/cortex",
            "source": "flag",
            "origin": "",
            "env": "CORTEX_DATA_DIR",
        }
        assert by_key["hub.listen"]["source"] == "env"
        assert by_key["hub.listen"]["origin"] == "CORTEX_LISTEN"
        assert by_key["sync.lock_wait"]["value"] == 9.0
        assert by_key["sync.lock_wait"]["source"] == "file"
        assert by_key["sync.lock_wait"]["origin"] == str(user_config)
        assert by_key["sync.lock_ttl"]["source"] == "default"

        table = run_cli("config", "show")
        assert table.exit_code == 0
        lines = {line.split()[0]: line.split()[1:] for line in table.stdout.splitlines()[1:]}
        assert set(lines) == {setting.key for setting in SETTINGS}
        assert lines["sync.lock_wait"] == ["9s", "file", str(user_config)]
        assert lines["hub.listen"] == ["127.0.0.1:7", "env", "CORTEX_LISTEN"]
        assert lines["sandbox.max_output_bytes"] == ["1MiB", "default"]
        assert f"config file: {user_config}" in table.stderr

    def test_get_prints_a_value_its_setting_accepts_back(self) -> None:
        assert ok("config", "get", "hub.heartbeat_interval") == "5s\n"
        assert ok("config", "get", "sync.max_file_bytes") == "1GiB\n"
        assert ok("config", "get", "hub.listen") == "127.0.0.1:50051\n"
        shown = json.loads(ok("config", "get", "jobs.journal_retention", "--json"))
        assert shown["value"] == 30 * 86400.0
        assert shown["source"] == "default"
        assert shown["env"] == "CORTEX_JOURNAL_RETENTION"

    @pytest.mark.parametrize(
        ("key", "suggested"),
        [("hub.listn", "hub.listen"), ("listen", "metrics.listen"), ("retention", "jobs.")],
    )
    def test_an_unknown_key_is_not_found_and_names_similar_keys(
        self, key: str, suggested: str
    ) -> None:
        assert_one_line_error(
            run_cli("config", "get", key), 3, f"unknown setting {key!r}", suggested
        )

    def test_an_unknown_key_with_nothing_similar_says_where_to_look(self) -> None:
        assert_one_line_error(
            run_cli("config", "get", "zzz"), 3, "unknown setting 'zzz'", "config show"
        )


class TestSet:
    def test_creates_the_file_and_section_privately(self, user_config: Path) -> None:
        out = ok("config", "set", "hub.heartbeat_interval", "10s")
        assert out == f"hub.heartbeat_interval = 10s in {user_config}\n"
        assert user_config.read_text() == '[hub]\nheartbeat_interval = "10s"\n'
        assert stat.S_IMODE(user_config.stat().st_mode) == 0o600
        assert ok("config", "get", "hub.heartbeat_interval") == "10s\n"
        shown = json.loads(ok("config", "get", "hub.heartbeat_interval", "--json"))
        assert (shown["value"], shown["source"]) == (10.0, "file")

    def test_keeps_comments_order_and_other_keys(self, tmp_path: Path) -> None:
        config = tmp_path / "cortex.toml"
        config.write_text(
            "# Our hub.\n"
            "[hub]\n"
            'listen = "0.0.0.0:1"  # behind the load balancer\n'
            "# slower links here\n"
            'heartbeat_interval = "5s"\n'
            "\n"
            "[log]\n"
            'level = "debug"  # for now\n'
        )
        mode = stat.S_IMODE(config.stat().st_mode)
        ok("--config", str(config), "config", "set", "hub.listen", "0.0.0.0:2")
        ok("--config", str(config), "config", "set", "hub.poll_interval", "250ms")
        ok("--config", str(config), "config", "set", "sync.max_chunk_bytes", "65536")
        ok("--config", str(config), "config", "set", "sandbox.default_allowed_commands", "git,make")
        assert config.read_text() == (
            "# Our hub.\n"
            "[hub]\n"
            'listen = "0.0.0.0:2"  # behind the load balancer\n'
            "# slower links here\n"
            'heartbeat_interval = "5s"\n'
            'poll_interval = "250ms"\n'
            "\n"
            "[log]\n"
            'level = "debug"  # for now\n'
            "\n"
            "[sync]\n"
            "max_chunk_bytes = 65536\n"
            "\n"
            "[sandbox]\n"
            'default_allowed_commands = ["git", "make"]\n'
        )
        assert stat.S_IMODE(config.stat().st_mode) == mode
        settings = load_settings({}, str(config), {})
        assert settings["sandbox.default_allowed_commands"] == ("git", "make")
        assert settings["hub.poll_interval"] == 0.25

    def test_into_the_template_keeps_every_comment(self, user_config: Path) -> None:
        ok("config", "init")
        ok("config", "set", "sandbox.default_mode", "PERMISSIVE")
        text = user_config.read_text()
        assert text.startswith(config_template().split("[sandbox]")[0])
        assert 'default_mode = "permissive"\n' in text
        assert text.count("\n# ") == config_template().count("\n# ")
        assert ok("config", "get", "sandbox.default_mode") == "permissive\n"

    def test_a_bad_value_is_a_usage_error_and_changes_nothing(self, user_config: Path) -> None:
        ok("config", "set", "sync.lock_wait", "9s")
        before = user_config.read_text()
        assert_one_line_error(
            run_cli("config", "set", "sync.lock_wait", "soon"),
            2,
            "bad value for sync.lock_wait",
            "30s, 10m",
        )
        assert_one_line_error(
            run_cli("config", "set", "log.level", "loud"), 2, "debug, info, warning, error"
        )
        assert_one_line_error(run_cli("config", "set", "store.workers", "many"), 2, "whole number")
        assert user_config.read_text() == before

    def test_an_unknown_key_is_not_found(self, user_config: Path) -> None:
        assert_one_line_error(run_cli("config", "set", "hub.lisen", "x"), 3, "hub.listen")
        assert not user_config.exists()

    def test_says_when_the_environment_overrides_the_file(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CORTEX_LOG_LEVEL", "error")
        result = run_cli("config", "set", "log.level", "debug")
        assert result.exit_code == 0
        assert "CORTEX_LOG_LEVEL is set and overrides the file" in result.stderr

    def test_a_file_that_cannot_be_written_is_one_error(
        self, user_config: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def refuse(*_args: object) -> None:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr("cortexctl.config.os.replace", refuse)
        assert_one_line_error(
            run_cli("config", "set", "hub.listen", "0.0.0.0:1"),
            1,
            f"cannot write config file {user_config}: Permission denied",
        )
        assert list(user_config.parent.iterdir()) == []  # no temporary file left behind


class TestInit:
    def test_writes_a_commented_template_of_every_setting(self, user_config: Path) -> None:
        assert ok("config", "init") == f"wrote {user_config}\n"
        text = user_config.read_text()
        assert text == config_template()
        for setting in SETTINGS:
            section, name = setting.key.split(".", 1)
            assert f"[{section}]\n" in text
            assert f"\n# {name} = " in text
            assert setting.env_var in text
            assert setting.help.split()[0] in text
        settings = load_settings({}, str(user_config), {})
        assert set(settings.sources.values()) == {"default"}

    def test_every_default_in_the_template_reads_back_as_the_default(self, tmp_path: Path) -> None:
        uncommented = re.sub(r"^# (\w+ = )", r"\1", config_template(), flags=re.M)
        config = tmp_path / "all.toml"
        config.write_text(uncommented)
        settings = load_settings({}, str(config), {})
        for setting in SETTINGS:
            if setting.default in ("", ()):
                continue  # an empty value in a file means "not set"
            assert settings.sources[setting.key].startswith("file"), setting.key
            assert settings[setting.key] == setting.default, setting.key

    def test_refuses_to_overwrite_without_force(self, user_config: Path) -> None:
        user_config.parent.mkdir(parents=True)
        user_config.write_text('[hub]\nlisten = "0.0.0.0:1"\n')
        assert_one_line_error(run_cli("config", "init"), 5, str(user_config), "--force")
        assert user_config.read_text() == '[hub]\nlisten = "0.0.0.0:1"\n'
        ok("config", "init", "--force")
        assert user_config.read_text() == config_template()

    def test_writes_the_explicit_file(self, tmp_path: Path) -> None:
        chosen = tmp_path / "etc" / "cortexctl" / "config.toml"
        shown = json.loads(ok("--config", str(chosen), "config", "init", "--json"))
        assert shown == {"path": str(chosen)}
        assert chosen.read_text() == config_template()


BAD_FILES = [
    pytest.param("[hub\n", ["not valid TOML", "line 1"], id="not-toml"),
    pytest.param('[hub]\nlisten_on = "x"\n', ["unknown key 'hub.listen_on'"], id="unknown-key"),
    pytest.param(
        '[hub]\nheartbeat_interval = "soon"\n',
        ["bad value for hub.heartbeat_interval", "30s, 10m"],
        id="bad-duration",
    ),
    pytest.param("[hub]\nlisten = 50051\n", ["bad value for hub.listen", "string"], id="bad-type"),
    pytest.param('listen = "x"\n', ["'listen' must be a [section] table"], id="not-a-table"),
    pytest.param(b"\xff\xfe[hub]\n", ["not UTF-8"], id="not-utf8"),
]


class TestBadFiles:
    @pytest.mark.parametrize(("content", "fragments"), BAD_FILES)
    def test_one_error_naming_file_key_and_problem(
        self, tmp_path: Path, content: str | bytes, fragments: list[str]
    ) -> None:
        config = tmp_path / "config.toml"
        if isinstance(content, bytes):
            config.write_bytes(content)
        else:
            config.write_text(content)
        for args in (("config", "show"), ("config", "get", "hub.listen"), ("nodes", "list")):
            assert_one_line_error(
                run_cli("--config", str(config), *args), 2, str(config), *fragments
            )

    def test_the_user_file_is_checked_too(self, user_config: Path) -> None:
        user_config.parent.mkdir(parents=True)
        user_config.write_text("[log]\nlevel = 3\n")
        assert_one_line_error(run_cli("config", "show"), 2, str(user_config), "log.level")

    def test_a_missing_explicit_file_says_how_to_create_it(self, tmp_path: Path) -> None:
        missing = tmp_path / "missing.toml"
        assert_one_line_error(
            run_cli("--config", str(missing), "config", "show"), 2, str(missing), "config init"
        )

    def test_a_directory_is_not_a_file(self, tmp_path: Path) -> None:
        assert_one_line_error(
            run_cli("--config", str(tmp_path), "config", "show"),
            2,
            f"cannot read config file {tmp_path}",
        )

    def test_a_broken_file_can_still_be_replaced(self, user_config: Path) -> None:
        user_config.parent.mkdir(parents=True)
        user_config.write_text("[hub\n")
        assert_one_line_error(
            run_cli("config", "set", "hub.listen", "0.0.0.0:1"), 2, "not valid TOML"
        )
        ok("config", "init", "--force")
        assert ok("config", "get", "hub.listen") == "127.0.0.1:50051\n"
