"""Admin tokens: credentials for the admin API, each with a role; shown once, stored
hashed, expiring, revocable — the same hygiene as invites."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from cortexctl.core import audit, clock
from cortexctl.core.audit import ADMIN_TOKEN_PREFIX, Actor
from cortexctl.core.refs import unique_match
from cortexctl.core.roles import check_role
from cortexctl.core.secrets import mint, new_id, secret_matches, split_token, token_state
from cortexctl.core.views import AdminTokenView as AdminTokenView
from cortexctl.errors import Conflict, InvalidArgument, NotFound, Unauthenticated
from cortexctl.store.models import AdminToken

ADMIN_TOKEN_ID_PREFIX = "adm_"


@dataclass(frozen=True)
class CreatedAdminToken:
    admin_token: AdminTokenView
    token: str  # shown once, never stored


def _state(row: AdminToken, at: datetime) -> str:
    return token_state(row.revoked_at, row.expires_at, at)


def view(row: AdminToken, at: datetime | None = None) -> AdminTokenView:
    return AdminTokenView(
        id=row.id,
        name=row.name,
        role=row.role,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
        last_used_at=row.last_used_at,
        created_by=row.created_by,
        state=_state(row, at or clock.now()),
    )


def create_admin_token(
    session: Session, actor: Actor, *, name: str, role: str, ttl_s: float | None
) -> CreatedAdminToken:
    role = check_role(role)
    name = name.strip()
    if not name or len(name) > 128 or any(ch.isspace() for ch in name):
        raise InvalidArgument(f"bad --name {name!r}: give a word of 1-128 characters")
    if ttl_s is not None and ttl_s <= 0:
        raise InvalidArgument("bad --ttl: give a positive duration, e.g. 30d")
    if session.scalar(select(AdminToken.id).where(AdminToken.name == name)) is not None:
        raise Conflict(f"an admin token named {name!r} exists; pick another --name")
    now = clock.now()
    token_id = new_id(ADMIN_TOKEN_ID_PREFIX)
    minted = mint(ADMIN_TOKEN_PREFIX, token_id)
    row = AdminToken(
        id=token_id,
        name=name,
        role=role,
        secret_hash=minted.secret_hash,
        created_at=now,
        expires_at=None if ttl_s is None else now + timedelta(seconds=ttl_s),
        revoked_at=None,
        last_used_at=None,
        created_by=f"{actor.kind}:{actor.name}"[:200],
    )
    session.add(row)
    session.flush()
    audit.record(session, actor, "admin_tokens.create", row.id, detail={"name": name, "role": role})
    return CreatedAdminToken(view(row, now), minted.token)


def list_admin_tokens(session: Session, *, include_inactive: bool = False) -> list[AdminTokenView]:
    now = clock.now()
    views = [
        view(row, now) for row in session.scalars(select(AdminToken).order_by(AdminToken.name))
    ]
    return views if include_inactive else [v for v in views if v.state == "active"]


def resolve_admin_token(session: Session, ref: str) -> AdminToken:
    row = session.scalar(
        select(AdminToken).where(or_(AdminToken.id == ref, AdminToken.name == ref))
    )
    if row is None:
        match = unique_match(session, AdminToken.id, ADMIN_TOKEN_ID_PREFIX, ref, "admin token")
        row = session.get(AdminToken, match) if match else None
    if row is None:
        raise NotFound(f"no admin token {ref!r}; see `cortexctl admin-tokens list --all`")
    return row


def revoke_admin_token(
    session: Session, actor: Actor, ref: str, *, dry_run: bool = False
) -> AdminTokenView:
    """Revoke the token (by id, name or unique id prefix); with ``dry_run`` only what it
    would be, nothing changed or audited."""
    row = resolve_admin_token(session, ref)
    if dry_run:
        return dataclasses.replace(view(row), revoked=True, state="revoked")
    if row.revoked_at is None:
        row.revoked_at = clock.now()
        audit.record(session, actor, "admin_tokens.revoke", row.id, detail={"name": row.name})
    return view(row)


def authenticate_admin(session: Session, token: str) -> AdminTokenView:
    """The active admin token behind ``token``, or Unauthenticated saying why."""
    parts = split_token(ADMIN_TOKEN_PREFIX, token)
    if parts is None:
        raise Unauthenticated(
            "malformed admin token: expected the whole token printed by "
            "`cortexctl admin-tokens create`"
        )
    token_id, secret = parts
    row = session.get(AdminToken, token_id)
    if row is None or not secret_matches(secret, row.secret_hash):
        raise Unauthenticated("unknown admin token; ask an admin for one")
    now = clock.now()
    state = _state(row, now)
    if state != "active":
        raise Unauthenticated(f"admin token {row.name} ({row.id}) is {state}")
    return view(row, now)


LAST_USED_EVERY_S = 60.0  # last_used_at is written at most this often per token


def last_used_due(token: AdminTokenView, at: datetime | None = None) -> bool:
    """Whether a call by ``token`` should record ``last_used_at`` (at most once a minute:
    a read-only call must not cost a write each time)."""
    if token.last_used_at is None:
        return True
    return ((at or clock.now()) - token.last_used_at).total_seconds() >= LAST_USED_EVERY_S


def touch_last_used(session: Session, token_id: str) -> None:
    """Record a use of the token now, unless another call did within the minute."""
    now = clock.now()
    cutoff = now - timedelta(seconds=LAST_USED_EVERY_S)
    session.execute(
        update(AdminToken)
        .where(AdminToken.id == token_id)
        .where(or_(AdminToken.last_used_at.is_(None), AdminToken.last_used_at < cutoff))
        .values(last_used_at=now)
    )


def refused_actor(token: str, peer: str) -> Actor:
    """Who a refused call came from: the token's name when it is known, else its id (from
    the token, never its secret) or "anonymous"."""
    parts = split_token(ADMIN_TOKEN_PREFIX, token) if token else None
    name = parts[0][:64] if parts else "anonymous"
    return Actor(name=name, kind="token", source=f"admin API from {peer}")


REFUSAL_OUTCOMES = {"UNAUTHENTICATED": "unauthenticated", "PERMISSION_DENIED": "denied"}


def record_refusal(
    session: Session, actor: Actor, method: str, code: str, *, needed: str, role: str = ""
) -> None:
    """Audit a call refused by authentication or its role (``code``: the gRPC status it
    got; the entry's outcome is unauthenticated or denied)."""
    audit.record(
        session,
        actor,
        "admin_api.refused",
        method,
        outcome=REFUSAL_OUTCOMES[code],
        detail={"needed": needed, **({"role": role} if role else {})},
    )
