"""Schema safety: the models agree with the migrations, and old store files upgrade.

tests/data/store-<rev>.db are stores written by older cortexctl (see
tools/make_store_fixture.py). Each is upgraded to whatever the head is today and then used
through core, so every new migration is run against real old rows, on SQLite and on
PostgreSQL (the same rows copied into a schema at the old revision).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, String, create_engine, insert, select

from cortexctl.core import invites, journal, nodes, presence
from cortexctl.core.sandbox import SandboxDefaults
from cortexctl.errors import NotFound, PermissionDenied
from cortexctl.store.engine import SCHEMA_HEAD, Store, current_revision, known_revisions, upgrade
from cortexctl.store.models import Base

DATA = Path(__file__).resolve().parent.parent / "data"
FIXTURES = sorted(DATA.glob("store-*.db"))
DEFAULTS = SandboxDefaults(allowed_commands=("echo",))

# The fixture's tokens (tools/make_store_fixture.py)
LIVE_INVITE = "cortex-invite.in_0a1b2c3d4e5f.fixture-live-invite-secret-0001"
ALPHA = "cortex-node.nd_a1a1a1a1a1a1.fixture-alpha-credential-secret"
REVOKED = "cortex-node.nd_c3c3c3c3c3c3.fixture-revoked-credential-secret"


def schema_diff(store: Store, metadata: MetaData = Base.metadata) -> list[Any]:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_models_match_the_migrations_on_sqlite(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        upgrade(store)
        assert schema_diff(store) == []
    finally:
        store.dispose()


def test_the_comparison_sees_a_column_the_migrations_lack(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        upgrade(store)
        models = MetaData()
        for table in Base.metadata.tables.values():
            table.to_metadata(models)
        models.tables["nodes"].append_column(Column("colour", String(8)))
        assert [change[0] for change in schema_diff(store, models)] == ["add_column"]
    finally:
        store.dispose()


def test_models_match_the_migrations_on_postgresql(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        upgrade(store)
        assert schema_diff(store) == []
    finally:
        store.dispose()


def test_schema_head_constant_is_the_newest_migration() -> None:
    assert known_revisions()[0] == SCHEMA_HEAD


def test_there_is_a_fixture_for_the_first_schema() -> None:
    assert DATA / "store-0001.db" in FIXTURES


def revision_of(path: Path) -> str:
    return path.stem.removeprefix("store-")


def copy_into(source: Path, store: Store) -> None:
    """Copy every row of the SQLite file ``source`` into ``store`` (at the same revision)."""
    reader = create_engine(f"sqlite:///{source}")
    old, new = MetaData(), MetaData()
    old.reflect(reader)
    new.reflect(store.engine)
    try:
        with reader.connect() as src, store.engine.begin() as dst:
            for table in new.sorted_tables:
                if table.name == "alembic_version":
                    continue
                rows = [dict(row._mapping) for row in src.execute(select(old.tables[table.name]))]
                dst.execute(table.delete())
                if rows:
                    dst.execute(insert(table), rows)
    finally:
        reader.dispose()


def use_through_core(store: Store) -> None:
    """What an operator and a hub do first with an upgraded store."""
    with store.session() as session:
        listed = {view.name: view for view in nodes.list_nodes(session, DEFAULTS)}
        assert set(listed) == {"alpha", "beta", "gamma"}
        assert listed["gamma"].revoked and not listed["alpha"].revoked
        assert listed["beta"].labels == {"team": "ml"}
        old = journal.get_task(session, "tk_000000000001")
        assert (old.state, old.node_name, old.exit_code) == ("succeeded", "alpha", 0)
        running = journal.get_task(session, "tk_000000000002")
        assert running.state == "running"
        assert {task.id for task in journal.list_tasks(session, states=["pending"])} == {
            "tk_000000000003"
        }
        assert presence.presence_of(session, ["nd_a1a1a1a1a1a1"])
        assert [view.id for view in invites.list_invites(session)] == ["in_0a1b2c3d4e5f"]
    with store.session(write=True) as session:
        alpha = nodes.authenticate(session, ALPHA)
        submitted = journal.submit_task(session, alpha, argv=["echo", "again"], defaults=DEFAULTS)
    with store.session(write=True) as session:
        joined = nodes.join_with_invite(
            session,
            LIVE_INVITE,
            hostname="new-box",
            requested_name="delta",
            agent_version="9.9.9",
            labels={},
            capabilities=[],
        )
        assert joined.node.labels == {"team": "ml"}  # the invite's labels, as before
    with store.session() as session:
        again = journal.get_task(session, submitted.id)
        assert (again.state, again.argv) == ("pending", ["echo", "again"])
        assert nodes.show_node(session, "delta", DEFAULTS).name == "delta"
        with pytest.raises(NotFound):
            journal.get_task(session, "tk_nope")
    with store.session() as session, pytest.raises(PermissionDenied):
        nodes.authenticate(session, REVOKED)


@pytest.mark.parametrize("fixture", FIXTURES, ids=revision_of)
def test_old_sqlite_store_upgrades_to_head_and_works(fixture: Path, tmp_path: Path) -> None:
    path = tmp_path / fixture.name
    shutil.copyfile(fixture, path)
    store = Store(f"sqlite:///{path}")
    try:
        assert current_revision(store) == revision_of(fixture)
        upgrade(store)
        assert current_revision(store) == SCHEMA_HEAD
        assert schema_diff(store) == []
        use_through_core(store)
    finally:
        store.dispose()


@pytest.mark.parametrize("fixture", FIXTURES, ids=revision_of)
def test_old_rows_upgrade_to_head_on_postgresql(fixture: Path, pg_url: str) -> None:
    store = Store(pg_url)
    try:
        upgrade(store, revision_of(fixture))
        copy_into(fixture, store)
        upgrade(store)
        assert current_revision(store) == SCHEMA_HEAD
        use_through_core(store)
    finally:
        store.dispose()
