"""The audit log: who changed what, from where, with what outcome, and when.

Core records an entry for every operator change and every node join, from the local CLI
and the admin API alike. Entries are only added: no API updates or deletes one, except the
retention GC (``gc_audit``). Someone with write access to the store itself can always
rewrite it (SECURITY.md says so). An entry never holds a secret: ``record`` refuses a
detail value that looks like a token or credential.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from cortexctl.core import clock
from cortexctl.core.secrets import INVITE_PREFIX, NODE_PREFIX
from cortexctl.core.views import AuditView as AuditView
from cortexctl.errors import InvalidArgument
from cortexctl.store.models import AuditEntry

ADMIN_TOKEN_PREFIX = "cortex-admin"
_SECRET_MARKERS = (f"{INVITE_PREFIX}.", f"{NODE_PREFIX}.", f"{ADMIN_TOKEN_PREFIX}.", "Bearer ")


@dataclass(frozen=True)
class Actor:
    """Who acts: ``kind`` is local (an OS user running the CLI), token (an admin token's
    name), certificate (an mTLS client certificate's subject) or node (a node joining);
    ``source`` says from where."""

    name: str
    kind: str
    source: str = ""


def local_actor() -> Actor:
    """The OS user running this process, on this host: the actor of local CLI commands."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return Actor(name=user, kind="local", source=f"cli on {socket.gethostname()}")


def view(row: AuditEntry) -> AuditView:
    return AuditView(
        seq=row.id,
        at=row.at,
        actor=row.actor,
        actor_kind=row.actor_kind,
        source=row.source,
        action=row.action,
        target=row.target,
        outcome=row.outcome,
        detail=dict(row.detail or {}),
    )


def _has_secret(value: Any) -> bool:
    if isinstance(value, str):
        return any(marker in value for marker in _SECRET_MARKERS)
    if isinstance(value, Mapping):
        return any(_has_secret(k) or _has_secret(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_secret(v) for v in value)
    return False


def record(
    session: Session,
    actor: Actor,
    action: str,
    target: str = "",
    *,
    outcome: str = "ok",
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Add one entry in the caller's transaction (so it commits with the change itself)."""
    detail = dict(detail or {})
    if _has_secret(detail) or _has_secret(target) or _has_secret(actor.name):
        # A programming error, never an operator's: refuse rather than store a secret.
        raise ValueError(f"audit entry for {action} would hold a secret")
    # One INSERT, no unit of work: a join burst adds one entry per join.
    session.execute(
        insert(AuditEntry).values(
            at=clock.now(),
            actor=actor.name[:200],
            actor_kind=actor.kind,
            source=actor.source[:255],
            action=action,
            target=target[:255],
            outcome=outcome,
            detail=detail,
        )
    )


def list_audit(
    session: Session,
    *,
    since: datetime | None = None,
    actor: str | None = None,
    limit: int = 200,
) -> list[AuditView]:
    """Entries oldest first (the newest ``limit`` of them), optionally since a time or by
    one actor."""
    if limit < 1:
        raise InvalidArgument("bad --limit: give at least 1")
    query = select(AuditEntry)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    rows = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)).all()
    return [view(row) for row in reversed(rows)]


def latest_seq(session: Session) -> int:
    """The newest entry's place in the log (0 when empty): where an event watch starts."""
    return int(session.scalar(select(func.max(AuditEntry.id))) or 0)


def entries_after(session: Session, seq: int, limit: int = 500) -> list[AuditView]:
    """Entries added after ``seq``, oldest first (at most ``limit``)."""
    rows = session.scalars(
        select(AuditEntry).where(AuditEntry.id > seq).order_by(AuditEntry.id).limit(limit)
    )
    return [view(row) for row in rows]


def gc_audit(
    session: Session, *, retention_s: float, dry_run: bool = False, batch: int = 1000
) -> list[int]:
    """Ids of entries older than ``retention_s`` (removed unless ``dry_run``), at most
    ``batch`` per call: the only way an entry ever leaves the log."""
    if retention_s <= 0:
        raise InvalidArgument("bad audit retention: give a positive duration, e.g. 90d")
    cutoff = clock.now() - timedelta(seconds=retention_s)
    ids = list(
        session.scalars(
            select(AuditEntry.id).where(AuditEntry.at < cutoff).order_by(AuditEntry.id).limit(batch)
        )
    )
    if ids and not dry_run:
        session.execute(delete(AuditEntry).where(AuditEntry.id.in_(ids)))
    return ids
