"""One engine per process, SQLite pragmas, session scopes, schema upgrades."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event, exc, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from cortexctl.errors import Conflict, Unavailable, UsageError

SQLITE_BUSY_TIMEOUT_MS = 5000
# A database timeout set from a deadline fires a hair before it; count that as the deadline.
DEADLINE_SLACK_S = 0.25
MIGRATIONS = Path(__file__).with_name("migrations")


def affected(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE changed (typed: ``Session.execute`` returns a plain Result)."""
    return int(cast(CursorResult[Any], result).rowcount)


def make_engine(
    url: str, *, pool_size: int = 10, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
) -> Engine:
    """Create the process's engine; SQLite gets WAL, busy_timeout, foreign keys."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise UsageError(
            f"bad database URL {url!r}: expected e.g. sqlite:///path/cortex.db "
            "or postgresql+psycopg://user@host/db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            folder = Path(database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise Unavailable(
                    f"cannot create the data directory {folder}: "
                    f"{err.strerror}; set --data-dir to a writable place"
                ) from None
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        engine = create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            connect_args=_pg_connect_args(parsed),
        )
        if parsed.get_backend_name() == "postgresql":
            _configure_postgresql(engine)
        return engine
    except ModuleNotFoundError as err:
        raise UsageError(
            f"the database driver for {parsed.drivername} is not installed "
            f"({err.name}); install cortexctl[postgres]"
        ) from None


def _pg_connect_args(url: Any) -> dict[str, Any]:
    return {"connect_timeout": 5} if url.get_backend_name() == "postgresql" else {}


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        options = connection.get_execution_options()
        # A deadline shortens how long this transaction may wait for the write lock; the
        # connection goes back to the default wait afterwards.
        wait_ms = _remaining_ms(options.get("cortex_deadline"), busy_timeout_ms)
        if (
            wait_ms != busy_timeout_ms
            or connection.info.get("busy_ms", busy_timeout_ms) != busy_timeout_ms
        ):
            connection.exec_driver_sql(f"PRAGMA busy_timeout={wait_ms}")
            connection.info["busy_ms"] = wait_ms
        # IMMEDIATE takes the write lock up front, so a read-then-write transaction waits on
        # busy_timeout instead of failing at once when another writer committed in between.
        immediate = options.get("cortex_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        deadline = connection.get_execution_options().get("cortex_deadline")
        if deadline is not None:
            wait_ms = _remaining_ms(deadline, 0)
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = {wait_ms}")
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {wait_ms}")


def _remaining_ms(deadline: float | None, default_ms: int) -> int:
    if deadline is None:
        return default_ms
    return max(1, int((deadline - time.monotonic()) * 1000))


class Store:
    """Engine plus session factory; the caller owns each session (one per unit of work)."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            self.engine.execution_options(cortex_immediate=True), expire_on_commit=False
        )

    @contextlib.contextmanager
    def session(self, *, write: bool = False, deadline: float | None = None) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error.

        ``write=True`` takes SQLite's write lock at BEGIN, for read-then-write work. With a
        ``deadline`` (a ``time.monotonic()`` value) the database gives up waiting for locks
        when it passes, and a transaction that finishes after it is rolled back, never
        committed: its caller has already been told UNAVAILABLE.
        """
        factory = self._write_sessions if write else self._sessions
        with store_errors(self.url, deadline), factory() as session, session.begin():
            if deadline is not None:
                if time.monotonic() >= deadline:
                    raise Unavailable("the store was not reached before the deadline")
                session.connection(execution_options={"cortex_deadline": deadline})
            yield session
            if deadline is not None and time.monotonic() > deadline:
                raise Unavailable("the store answered after the deadline; nothing was changed")

    def dispose(self) -> None:
        self.engine.dispose()

    @property
    def display_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)


@contextlib.contextmanager
def store_errors(url: str, deadline: float | None = None) -> Iterator[None]:
    """Map driver errors to typed ones: a store that fails is UNAVAILABLE, not a traceback."""
    try:
        yield
    except exc.IntegrityError as err:
        raise Conflict(
            f"a concurrent change conflicted ({str(err.orig).strip()}); try again"
        ) from None
    except (exc.OperationalError, exc.InterfaceError, exc.DatabaseError) as err:
        if deadline is not None and time.monotonic() >= deadline - DEADLINE_SLACK_S:
            # The database's own timeout (set from the deadline) fired first: say so the
            # same way as when the executor's deadline does.
            raise Unavailable(
                "the store did not answer within the deadline "
                f"({describe_operational_error(url, err)}); retry shortly"
            ) from None
        raise Unavailable(describe_operational_error(url, err)) from None


def describe_operational_error(url: str, err: exc.DBAPIError) -> str:
    message = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
    shown = make_url(url).render_as_string(hide_password=True)
    if "locked" in message:
        return f"the store {shown} is busy ({message}); try again"
    if "no such table" in message or "does not exist" in message and "relation" in message:
        return f"the store {shown} has no schema yet ({message}); run `cortexctl db upgrade`"
    return f"cannot use the store {shown}: {message}"


# --- schema -------------------------------------------------------------------------------


def alembic_config(connection: Any = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def known_revisions() -> tuple[str, set[str]]:
    """(head revision, every revision) of the migrations shipped with this cortexctl."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    assert head is not None
    return head, {rev.revision for rev in scripts.walk_revisions()}


def current_revision(store: Store) -> str | None:
    """The schema revision of the store, or None for an empty database."""
    with store_errors(store.url), store.engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
        return None if row is None else str(row[0])


def upgrade(store: Store, revision: str = "head") -> tuple[str | None, str]:
    """Upgrade the schema; return (revision before, revision after)."""
    from alembic import command

    before = current_revision(store)
    if before == SCHEMA_HEAD and revision == "head":
        return before, before  # current: no need to load Alembic at all
    head, known = known_revisions()
    if before is not None and before not in known:
        raise UsageError(
            f"the store is at schema revision {before}, which this cortexctl does "
            "not know; upgrade cortexctl"
        )
    if before != head or revision != "head":
        with store_errors(store.url), store.engine.begin() as connection:
            command.upgrade(alembic_config(connection), revision)
    return before, current_revision(store) or ""


# The newest migration; a test checks it matches the migrations directory, so the CLI can
# check a store's schema with one query instead of importing Alembic.
SCHEMA_HEAD = "0001"


def ensure_current(store: Store) -> None:
    """Create the schema of an empty database; refuse an old one until `db upgrade` runs."""
    current = current_revision(store)
    if current == SCHEMA_HEAD:
        return
    if current is None:
        upgrade(store)
        return
    _, known = known_revisions()
    if current in known:
        raise Unavailable(
            f"the store {store.display_url} is at schema {current}, older than "
            f"this cortexctl ({SCHEMA_HEAD}); run `cortexctl db upgrade`"
        )
    raise Unavailable(
        f"the store {store.display_url} is at schema {current}, which this "
        "cortexctl does not know; upgrade cortexctl"
    )
