"""Typed SQLAlchemy 2 models of the store. Migrations in ``migrations/`` own the schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as naive UTC, returned as aware UTC on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use cortexctl.core.clock.now()")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class Invite(Base):
    __tablename__ = "invites"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    uses_allowed: Mapped[int] = mapped_column(Integer)
    uses_count: Mapped[int] = mapped_column(Integer, default=0)
    revoked_at: Mapped[datetime | None]
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sandbox_mode: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(String(200), default="")
    # The name the joining node gets (one use only), or the prefix its name must have.
    node_name: Mapped[str | None] = mapped_column(String(128))
    name_prefix: Mapped[str | None] = mapped_column(String(64))


class Node(Base):
    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    # Trusted labels: given by the invite or an operator. A node cannot change them.
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Labels the node reported about itself (`agent --label`): shown, never trusted.
    self_labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    capabilities: Mapped[list[str]] = mapped_column(JSON, default=list)
    credential_hash: Mapped[str] = mapped_column(String(64))
    invite_id: Mapped[str | None] = mapped_column(String(32))
    # NULL sandbox_mode means "the hub default", which is STRICT unless configured otherwise.
    sandbox_mode: Mapped[str | None] = mapped_column(String(16))
    allowed_commands: Mapped[list[str] | None] = mapped_column(JSON)
    # STRICT argv pins (lists of words), set together with allowed_commands.
    allowed_prefixes: Mapped[list[list[str]] | None] = mapped_column(JSON)
    # Env names a STRICT task may set, on top of the hub-wide sandbox.allowed_env.
    allowed_env: Mapped[list[str] | None] = mapped_column(JSON)
    deny_network: Mapped[bool | None] = mapped_column(Boolean)  # NULL: the hub default
    limits: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # overrides of the defaults
    policy_revision: Mapped[int] = mapped_column(BigInteger, default=1)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # Set by `nodes cordon`: the hub dispatches nothing new to the node until uncordoned.
    cordoned_at: Mapped[datetime | None]
    # Mirror quota (NULL: the hub default, 0: no limit) and what the mirror holds now.
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    quota_files: Mapped[int | None] = mapped_column(BigInteger)
    mirror_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    mirror_files: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Presence(Base):
    __tablename__ = "presence"

    node_id: Mapped[str] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    hub_id: Mapped[str] = mapped_column(String(64))
    connected_at: Mapped[datetime]
    last_heartbeat: Mapped[datetime | None]
    disconnected_at: Mapped[datetime | None]
    heartbeat_interval_s: Mapped[float] = mapped_column(default=5.0)
    running_tasks: Mapped[int] = mapped_column(Integer, default=0)
    peer: Mapped[str] = mapped_column(String(255), default="")
    policy_revision_acked: Mapped[int] = mapped_column(BigInteger, default=0)
    # The stream that owns the row: claimed in one transaction when a stream opens, its
    # generation one more than the last, so the newest stream of a node wins on any hub.
    stream_id: Mapped[str] = mapped_column(String(32), default="", server_default="")
    stream_gen: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_node_state", "node_id", "state"),
        Index("ix_tasks_state_finished", "state", "finished_at"),
        Index("ix_tasks_state_expires", "state", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    argv: Mapped[list[str]] = mapped_column(JSON, default=list)
    script: Mapped[str] = mapped_column(Text, default="")
    env: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    cwd: Mapped[str] = mapped_column(String(1024), default="")
    timeout_s: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    dispatched_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    exit_code: Mapped[int | None]
    stdout: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    stderr: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    output_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str] = mapped_column(Text, default="")
    hub_id: Mapped[str | None] = mapped_column(String(64))
    # The epoch of hub_id under which it holds the task: its fencing token (see core/hubs.py).
    hub_epoch: Mapped[int | None] = mapped_column(BigInteger)
    stream_id: Mapped[str | None] = mapped_column(String(64))
    # A pending task not dispatched by then ends EXPIRED; NULL means it waits forever.
    expires_at: Mapped[datetime | None]


class SyncLease(Base):
    __tablename__ = "sync_leases"

    node_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    sync_id: Mapped[str] = mapped_column(String(64))
    hub_id: Mapped[str] = mapped_column(String(64))
    temp_path: Mapped[str] = mapped_column(String(1024), default="")
    started_at: Mapped[datetime]
    last_activity: Mapped[datetime]
    bytes_received: Mapped[int] = mapped_column(BigInteger, default=0)
    # On the store's clock (PostgreSQL's now()): past it, another hub may take the path.
    # NULL (a lease from before 0012): only its hub's liveness decides.
    expires_at: Mapped[datetime | None]
    hub_epoch: Mapped[int | None] = mapped_column(BigInteger)


class MirrorFile(Base):
    """A file a hub holds in a node's mirror: written when an upload completes, removed
    with the file. ``mirrors ls`` reads these, so it is complete from any host."""

    __tablename__ = "mirror_files"
    __table_args__ = (Index("ix_mirror_files_hub", "hub_id", "node_id"),)

    node_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    hub_id: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class Hub(Base):
    __tablename__ = "hubs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    started_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime]
    stopped_at: Mapped[datetime | None]
    # The fencing token: grows at each start and whenever a lapsed lease is re-acquired.
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    # The epoch the running process joined at (start, or rejoin after a takeover); epochs
    # from here to ``epoch`` are that process's (a lapsed lease re-acquired bumps ``epoch``).
    registered_epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    version: Mapped[str] = mapped_column(String(64), default="")
    nodes_connected: Mapped[int] = mapped_column(Integer, default=0)
    # The live hub that failed this hub's tasks after its lease lapsed (its epoch's end).
    recovered_by: Mapped[str | None] = mapped_column(String(64))
    recovered_epoch: Mapped[int | None] = mapped_column(BigInteger)


class Counter(Base):
    """Named counters; ``changes`` grows on every write the hub must notice."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class AdminLock(Base):
    """Store-level mutex so two runs of one admin task never overlap."""

    __tablename__ = "admin_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class JobRun(Base):
    """Last run of each maintenance job of each hub, for `mesh status --jobs`."""

    __tablename__ = "job_runs"

    hub_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    interval_s: Mapped[float] = mapped_column(default=0.0)
    last_started_at: Mapped[datetime | None]
    last_duration_s: Mapped[float | None]
    last_outcome: Mapped[str] = mapped_column(String(16), default="never")
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    next_run_at: Mapped[datetime | None]
    runs: Mapped[int] = mapped_column(BigInteger, default=0)
    failures: Mapped[int] = mapped_column(BigInteger, default=0)


class AdminToken(Base):
    """A credential for the admin API: shown once, kept as its SHA-256, with a role."""

    __tablename__ = "admin_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(200), default="")


class AuditEntry(Base):
    """One operator change or node join; rows are only ever added (and aged out by GC)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"), Index("ix_audit_log_actor", "actor"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(200))
    actor_kind: Mapped[str] = mapped_column(String(16))  # local | token | node
    source: Mapped[str] = mapped_column(String(255), default="")
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255), default="")
    outcome: Mapped[str] = mapped_column(String(16), default="ok")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SubmitRequest(Base):
    """A client request id of `tasks submit` and the tasks it made, so a retry makes none."""

    __tablename__ = "submit_requests"
    __table_args__ = (Index("ix_submit_requests_created_at", "created_at"),)

    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    task_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime]
