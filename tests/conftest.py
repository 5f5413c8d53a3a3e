"""Fixtures shared by every test: an isolated environment and a fresh store per test.

The store is a SQLite file in the test's temp dir, or — when CORTEX_TEST_DATABASE_URL
names a PostgreSQL database — a schema of its own in that database, dropped afterwards,
so runs never see each other's rows.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEADLINE_SCALE = 2.0


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 15.0,
    what: str = "condition",
    interval: float = 0.05,
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` at the deadline.

    Deadlines only bound a failing test; a passing one returns as soon as the condition
    holds. They are doubled here because the suite runs on three workers on shared
    two-core machines, where a process can be starved for seconds.
    """
    timeout *= DEADLINE_SCALE
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME, XDG dirs and every CORTEX_* variable away from the real user."""
    for key in list(os.environ):
        if key.startswith("CORTEX_") and key != "CORTEX_TEST_DATABASE_URL":
            monkeypatch.delenv(key)
    # The machine's /etc/cortexctl/config.toml must not reach a test.
    monkeypatch.setenv("CORTEX_SYSTEM_CONFIG", str(tmp_path / "etc" / "cortexctl" / "config.toml"))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_STATE_HOME", ".local/state"),
        ("XDG_CACHE_HOME", ".cache"),
    ):
        monkeypatch.setenv(var, str(home / sub))
    return home


def _pg_admin_url() -> str | None:
    return os.environ.get("CORTEX_TEST_DATABASE_URL") or None


def _create_pg_schema(url: str) -> tuple[str, Callable[[], None]]:
    """A fresh schema in the PostgreSQL database at ``url``; returns (scoped url, dropper)."""
    import sqlalchemy as sa

    schema = f"t_{secrets.token_hex(6)}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in url else "?"
    scoped = f"{url}{separator}options={quote(f'-csearch_path={schema}')}"

    def drop() -> None:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()

    return scoped, drop


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """The URL of an empty store for this test (SQLite file, or a PostgreSQL schema)."""
    admin = _pg_admin_url()
    if admin is None:
        yield f"sqlite:///{tmp_path / 'data' / 'cortex.db'}"
        return
    scoped, drop = _create_pg_schema(admin)
    try:
        yield scoped
    finally:
        drop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL schema even in a SQLite run; unreachable fails in CI, skips locally."""
    admin = _pg_admin_url() or PG_DEFAULT
    try:
        scoped, drop = _create_pg_schema(admin)
    except Exception as err:  # noqa: BLE001 - any failure to reach it means the same here
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and unreachable at {admin}: {err}")
        pytest.skip(f"PostgreSQL unreachable at {admin}: {err}")
    try:
        yield scoped
    finally:
        drop()


@pytest.fixture(params=["sqlite", "postgresql"])
def each_store(request: pytest.FixtureRequest, data_dir: Path) -> str:
    """A fresh store of each kind in turn (SQLite in ``data_dir``, a PostgreSQL schema)."""
    if request.param == "sqlite":
        return f"sqlite:///{data_dir / 'cortex.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def no_store_env(
    database_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """CORTEX_* variables pointing at a store that does not exist yet (no schema)."""
    env = {"CORTEX_DATABASE_URL": database_url, "CORTEX_DATA_DIR": str(data_dir)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def store_env(no_store_env: dict[str, str]) -> dict[str, str]:
    """CORTEX_* variables that point commands (in-process and child processes) at a store
    with the current schema (read commands never create one)."""
    from cortexctl.store.engine import Store, upgrade

    store = Store(no_store_env["CORTEX_DATABASE_URL"])
    try:
        upgrade(store)
    finally:
        store.dispose()
    return no_store_env


@pytest.fixture
def fresh_store(database_url: str) -> Iterator[Any]:
    """A Store with the current schema, for in-process tests of core."""
    from cortexctl.store.engine import Store, upgrade

    store = Store(database_url)
    upgrade(store)
    try:
        yield store
    finally:
        store.dispose()


@pytest.fixture
def mesh(tmp_path: Path, store_env: dict[str, str], isolated_env: Path) -> Iterator[Any]:
    """A running `cortexctl serve` on loopback (1 s heartbeats); agents are started by tests."""
    from tests.helpers import child_env, running_mesh

    with running_mesh(tmp_path, child_env(store_env, isolated_env)) as running:
        yield running


@pytest.fixture(params=["local", "remote"])
def cli(
    request: pytest.FixtureRequest, tmp_path: Path, store_env: dict[str, str], isolated_env: Path
) -> Iterator[Any]:
    """The CLI run on the store, then (a second run of the test) through a remote context:
    a real `cortexctl serve` with TLS (a generated CA) and an admin token, on the same
    store, so every assertion of the test holds for both paths."""
    from tests.helpers import Cli, add_context, child_env, start_tls_hub

    if request.param == "local":
        yield Cli()
        return
    hub, pki = start_tls_hub(tmp_path / "remote", child_env(store_env, isolated_env))
    try:
        add_context("hub", hub, pki.ca, root=tmp_path)
        yield Cli(context="hub", hub=hub)
    finally:
        hub.stop()
