"""What the CLI shows never gives a secret away nor lets a node drive the terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_cli

DB_URL = "postgresql+psycopg://cortex:s3cr%40t-pw@db.internal:5432/cortex"
REDACTED = "postgresql+psycopg://cortex:***@db.internal:5432/cortex"


def outputs(*args: str) -> str:
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    return result.stdout + result.stderr


@pytest.mark.parametrize("as_json", [False, True])
def test_config_show_and_get_redact_database_passwords(
    monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    monkeypatch.setenv("CORTEX_DATABASE_URL", DB_URL)
    extra = ["--json"] if as_json else []
    for args in (["config", "show"], ["config", "get", "store.database_url"]):
        shown = outputs(*args, *extra)
        assert "s3cr" not in shown
        assert REDACTED in shown
    if as_json:
        views = json.loads(outputs("config", "show", "--json"))
        (url,) = [v["value"] for v in views if v["key"] == "store.database_url"]
        assert url == REDACTED


@pytest.mark.parametrize("as_json", [False, True])
def test_config_set_redacts_database_passwords(isolated_env: Path, as_json: bool) -> None:
    config = isolated_env / "cfg.toml"
    extra = ["--json"] if as_json else []
    shown = outputs("--config", str(config), "config", "set", "store.database_url", DB_URL, *extra)
    assert "s3cr" not in shown and REDACTED in shown
    assert "s3cr%40t-pw" in config.read_text()  # the file keeps the real value


def test_redaction_of_query_passwords_and_urls_without_one() -> None:
    from cortexctl.config import redact_url

    assert (
        redact_url("postgresql://h/db?user=u&password=pw")
        == "postgresql://h/db?user=u&password=***"
    )
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert (
        redact_url("sqlite:////var/lib/cortex/cortex.db") == "sqlite:////var/lib/cortex/cortex.db"
    )
