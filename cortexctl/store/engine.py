"""One engine per process, SQLite pragmas, session scopes, schema upgrades."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

from sqlalchemy import CursorResult, Engine, Result, create_engine, event, exc, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from cortexctl.core.clock import Deadline
from cortexctl.core.permissions import PRIVATE, HubModes, secure_sqlite_file
from cortexctl.errors import Conflict, CortexError, InvalidArgument, StoreFull, Unavailable
from cortexctl.redaction import redact_url

SQLITE_BUSY_TIMEOUT_MS = 5000
# PostgreSQL's lock_not_available (lock_timeout) and query_canceled (statement_timeout)
PG_TIMEOUT_STATES = frozenset({"55P03", "57014"})
SQLITE_FULL = 13  # "database or disk is full" (its primary result code)
MIGRATIONS = Path(__file__).with_name("migrations")


def affected(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE changed (typed: ``Session.execute`` returns a plain Result)."""
    return int(cast(CursorResult[Any], result).rowcount)


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
    modes: HubModes = PRIVATE,
    idle_in_transaction_s: float = 0.0,
) -> Engine:
    """Create the process's engine; SQLite gets WAL, busy_timeout, foreign keys, and a
    database file private to the hub (or its group) before SQLite first opens it.

    With ``idle_in_transaction_s`` PostgreSQL ends a session left that long inside a
    transaction (``idle_in_transaction_session_timeout``): a hub frozen mid-transaction
    (SIGSTOP, a GC pause, a partition) cannot hold the row locks a survivor needs to take
    it over for longer than that."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise InvalidArgument(
            f"bad database URL {redact_url(url)!r}: expected e.g. sqlite:///path/cortex.db "
            "or postgresql+psycopg://user@host/db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        extra: dict[str, Any] = {}
        if database and database != ":memory:":
            path = Path(database).expanduser()
            try:
                secure_sqlite_file(path, modes)
            except OSError as err:
                raise Unavailable(
                    f"cannot create the store {path} in its data directory: "
                    f"{err.strerror}; set --data-dir to a writable place"
                ) from None
            # The file exists now; a connection opened later must never make a new, empty
            # one where it was removed (SQLite's default mode creates a missing file).
            target = f"file:{quote(str(path.absolute()))}?mode=rw"
            timeout_s = busy_timeout_ms / 1000
            extra["creator"] = lambda: sqlite3.connect(
                target, uri=True, check_same_thread=False, timeout=timeout_s
            )
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
            **extra,
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
            connect_args=_pg_connect_args(parsed, idle_in_transaction_s),
        )
        if parsed.get_backend_name() == "postgresql":
            _configure_postgresql(engine)
        return engine
    except ModuleNotFoundError as err:
        raise InvalidArgument(
            f"the database driver for {parsed.drivername} is not installed "
            f"({err.name}); install the postgres extra (`pip install '.[postgres]'` from a "
            "checkout)"
        ) from None


def _pg_connect_args(url: Any, idle_in_transaction_s: float = 0.0) -> dict[str, Any]:
    if url.get_backend_name() != "postgresql":
        return {}
    args: dict[str, Any] = {"connect_timeout": 5}
    if idle_in_transaction_s > 0:
        # Merged after any options= of the URL's own (libpq: the later -c wins).
        ms = max(1, round(idle_in_transaction_s * 1000))
        given = str(url.query.get("options", ""))
        args["options"] = f"{given} -c idle_in_transaction_session_timeout={ms}".strip()
    return args


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


def _remaining_ms(deadline: Deadline | None, default_ms: int) -> int:
    return default_ms if deadline is None else deadline.remaining_ms()


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite store (None for another backend or an in-memory one)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database or "").expanduser().resolve()


def hold_single_hub_lock(url: str) -> int | None:
    """On SQLite, take the one-hub lock beside the store file for this process's life.

    SQLite coordinates no hubs (no leases across hosts, one writer): a second hub on the
    same file is refused here, before it listens. Returns the lock's descriptor (kept open
    until the process exits; the kernel releases it even after kill -9), or None elsewhere.
    """
    import fcntl

    path = sqlite_path(url)
    if path is None:
        return None
    lock = path.with_name(path.name + ".hub.lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise Unavailable(
            f"cannot open the hub lock {lock}: {err.strerror}; set --data-dir to a writable place"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise Conflict(
            f"another hub (pid {holder}) already serves the SQLite store {path}: SQLite "
            "takes one hub; stop it, or use PostgreSQL for several hubs"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class Store:
    """Engine plus session factory; the caller owns each session (one per unit of work)."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        modes: HubModes = PRIVATE,
        idle_in_transaction_s: float = 0.0,
    ) -> None:
        self.url = url
        self.engine = make_engine(
            url, pool_size=pool_size, modes=modes, idle_in_transaction_s=idle_in_transaction_s
        )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            self.engine.execution_options(cortex_immediate=True), expire_on_commit=False
        )
        # SQLite has one writer: this process's writers queue here, in order and awake,
        # instead of each sleeping in SQLite's busy handler (its back-off sleeps reach
        # 100 ms, the tail latency of a join burst). Other processes still meet the busy
        # handler. PostgreSQL locks rows, not the database: no queue.
        self._writer: threading.RLock | None = (
            threading.RLock() if self.engine.dialect.name == "sqlite" else None
        )

    @contextlib.contextmanager
    def session(
        self, *, write: bool = False, deadline: Deadline | None = None
    ) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error.

        ``write=True`` takes SQLite's write lock at BEGIN, for read-then-write work. With a
        ``deadline`` the database gives up waiting for locks (and, on PostgreSQL, running
        statements) when it passes, and a transaction that finishes after it is rolled back,
        never committed: its caller has already been told UNAVAILABLE.
        """
        factory = self._write_sessions if write else self._sessions
        with (
            store_errors(self.url, deadline),
            self._one_writer(write, deadline),
            factory() as session,
            session.begin(),
        ):
            if deadline is not None:
                if deadline.passed():
                    raise Unavailable("the store was not reached before the deadline")
                session.connection(execution_options={"cortex_deadline": deadline})
            yield session
            if deadline is not None and deadline.passed():
                raise Unavailable("the store answered after the deadline; nothing was changed")

    @contextlib.contextmanager
    def _one_writer(self, write: bool, deadline: Deadline | None) -> Iterator[None]:
        if not write or self._writer is None:
            yield
            return
        wait_s = (
            SQLITE_BUSY_TIMEOUT_MS / 1000 if deadline is None else max(0.0, deadline.remaining())
        )
        if not self._writer.acquire(timeout=wait_s):
            raise Unavailable("the store's writer stayed busy past the deadline; retry shortly")
        try:
            yield
        finally:
            self._writer.release()

    def dispose(self) -> None:
        self.engine.dispose()

    @property
    def display_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)


@contextlib.contextmanager
def store_errors(url: str, deadline: Deadline | None = None) -> Iterator[None]:
    """Map driver errors to typed ones: a store that fails is UNAVAILABLE, not a traceback."""
    try:
        yield
    except exc.DBAPIError as err:
        mapped = store_error(err, url, deadline)
        if mapped is None:
            raise
        raise mapped from None


def store_error(
    err: BaseException, url: str | None = None, deadline: Deadline | None = None
) -> CortexError | None:
    """The typed error for a database driver error, or None if ``err`` is not one.

    The one place that decides: ``store_errors`` raises it inside a session, and the CLI's
    edge uses it for a driver error that escaped one.
    """
    if isinstance(err, exc.IntegrityError):
        return Conflict(f"a concurrent change conflicted ({str(err.orig).strip()}); try again")
    if not isinstance(err, exc.OperationalError | exc.InterfaceError | exc.DatabaseError):
        return None
    if _disk_full(err):
        return StoreFull(describe_operational_error(url, err))
    if deadline is not None and _timed_out(err):
        # Under a deadline the database's lock and statement timeouts are set from it, so
        # its timeout is the deadline: say so the same way as when the executor's fires.
        return Unavailable(
            "the store did not answer within the deadline "
            f"({describe_operational_error(url, err)}); retry shortly"
        )
    return Unavailable(describe_operational_error(url, err))


def _disk_full(err: exc.DBAPIError) -> bool:
    """Whether SQLite found no room on its disk (SQLITE_FULL)."""
    code = getattr(err.orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF == SQLITE_FULL
    return "database or disk is full" in str(err.orig).lower()


def _timed_out(err: exc.DBAPIError) -> bool:
    """Whether the database gave up waiting (busy_timeout, lock_timeout, statement_timeout)."""
    if getattr(err.orig, "sqlstate", None) in PG_TIMEOUT_STATES:
        return True
    message = str(err.orig).lower()
    return "database is locked" in message or "database is busy" in message


def describe_operational_error(url: str | None, err: exc.DBAPIError) -> str:
    message = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
    shown = make_url(url).render_as_string(hide_password=True) if url else "(the store)"
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
    with store_errors(store.url), schema_lock(store) as connection:
        # Under the lock, look again: another hub may have just upgraded the schema.
        before = _revision_on(connection)
        if before is not None and before not in known:
            raise InvalidArgument(
                f"the store is at schema revision {before}, which this cortexctl does "
                "not know; upgrade cortexctl"
            )
        if before != head or revision != "head":
            with connection.begin():
                command.upgrade(alembic_config(connection), revision)
        return before, _revision_on(connection) or ""


# pg_advisory_lock key of schema upgrades ("cortex" + 1): every hub and `db upgrade` takes
# it, so any number of them starting at once on an empty database migrate it once.
SCHEMA_LOCK_KEY = 0x636F72746578_0001


@contextlib.contextmanager
def schema_lock(store: Store) -> Iterator[Any]:
    """A connection holding the store's schema lock (PostgreSQL; SQLite's write lock and
    the single-hub rule serialise there), released when the block ends."""
    with store.engine.connect() as connection:
        if connection.dialect.name != "postgresql":
            yield connection
            return
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        connection.commit()
        try:
            yield connection
        finally:
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
            connection.commit()


def _revision_on(connection: Any) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        connection.rollback()
        return None
    row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    connection.rollback()
    return None if row is None else str(row[0])


# The newest migration; a test checks it matches the migrations directory, so the CLI can
# check a store's schema with one query instead of importing Alembic.
SCHEMA_HEAD = "0012_mirrorfiles"


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
