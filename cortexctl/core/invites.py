"""Invites: a token shown once, stored as a hash, with a TTL, a number of uses, labels,
revocation and an optional sandbox mode for the nodes that join with it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from cortexctl.core import clock
from cortexctl.core.sandbox import check_mode
from cortexctl.core.secrets import (
    INVITE_PREFIX,
    hash_secret,
    make_token,
    new_id,
    new_secret,
    secret_matches,
    split_token,
)
from cortexctl.errors import InvalidArgument, NotFound, Unauthenticated
from cortexctl.store.engine import affected
from cortexctl.store.models import Invite


@dataclass(frozen=True)
class InviteView:
    id: str
    created_at: datetime
    expires_at: datetime
    uses_allowed: int
    uses_count: int
    revoked: bool
    labels: dict[str, Any]
    sandbox: str | None
    state: str  # active | expired | used | revoked
    note: str


@dataclass(frozen=True)
class CreatedInvite:
    invite: InviteView
    token: str  # shown once, never stored


def invite_state(invite: Invite, at: datetime) -> str:
    if invite.revoked_at is not None:
        return "revoked"
    if invite.uses_count >= invite.uses_allowed:
        return "used"
    if invite.expires_at <= at:
        return "expired"
    return "active"


def view(invite: Invite, at: datetime | None = None) -> InviteView:
    return InviteView(
        id=invite.id,
        created_at=invite.created_at,
        expires_at=invite.expires_at,
        uses_allowed=invite.uses_allowed,
        uses_count=invite.uses_count,
        revoked=invite.revoked_at is not None,
        labels=dict(invite.labels or {}),
        sandbox=invite.sandbox_mode,
        state=invite_state(invite, at or clock.now()),
        note=invite.note,
    )


def create_invite(
    session: Session,
    *,
    ttl_s: float,
    uses: int = 1,
    labels: dict[str, str] | None = None,
    sandbox: str | None = None,
    note: str = "",
) -> CreatedInvite:
    if uses < 1:
        raise InvalidArgument(f"bad --uses {uses}: an invite needs at least 1 use")
    if ttl_s <= 0:
        raise InvalidArgument("bad --ttl: an invite must live for some time, e.g. 1h")
    if sandbox is not None:
        check_mode(sandbox)
    now = clock.now()
    secret = new_secret()
    invite = Invite(
        id=new_id("inv_"),
        secret_hash=hash_secret(secret),
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
        uses_allowed=uses,
        uses_count=0,
        revoked_at=None,
        labels=dict(labels or {}),
        sandbox_mode=sandbox,
        note=note,
    )
    session.add(invite)
    session.flush()
    return CreatedInvite(
        invite=view(invite, now), token=make_token(INVITE_PREFIX, invite.id, secret)
    )


def list_invites(session: Session, *, include_inactive: bool = False) -> list[InviteView]:
    now = clock.now()
    rows = session.scalars(select(Invite).order_by(Invite.created_at)).all()
    views = [view(row, now) for row in rows]
    return views if include_inactive else [v for v in views if v.state == "active"]


def get_invite(session: Session, invite_id: str) -> Invite:
    invite = session.get(Invite, invite_id)
    if invite is None:
        raise NotFound(f"no invite {invite_id!r}; see `cortexctl invites list --all`")
    return invite


def revoke_invite(session: Session, invite_id: str) -> InviteView:
    invite = get_invite(session, invite_id)
    if invite.revoked_at is None:
        invite.revoked_at = clock.now()
    return view(invite)


def consume_invite(session: Session, token: str) -> Invite:
    """Spend one use of the invite behind ``token``, atomically, or say why it cannot be.

    The use is taken by one conditional UPDATE, so two joins racing for the last use
    cannot both win, on SQLite and PostgreSQL alike.
    """
    parts = split_token(INVITE_PREFIX, token)
    if parts is None:
        raise Unauthenticated(
            "malformed invite token: expected the whole token printed by `cortexctl invites create`"
        )
    invite_id, secret = parts
    invite = session.get(Invite, invite_id)
    if invite is None or not secret_matches(secret, invite.secret_hash):
        raise Unauthenticated("unknown invite token; ask the operator for a new invite")
    now = clock.now()
    taken = affected(
        session.execute(
            update(Invite)
            .where(
                Invite.id == invite_id,
                Invite.revoked_at.is_(None),
                Invite.uses_count < Invite.uses_allowed,
                Invite.expires_at > now,
            )
            .values(uses_count=Invite.uses_count + 1)
            .execution_options(synchronize_session=False)
        )
    )
    session.refresh(invite)
    if taken != 1:
        state = invite_state(invite, now)
        reason = {
            "revoked": "has been revoked",
            "used": "has been used up",
            "expired": "has expired",
        }.get(state, "cannot be used")
        raise Unauthenticated(f"invite {invite_id} {reason}; ask the operator for a new invite")
    return invite


def gc_invites(
    session: Session, *, retention_s: float, dry_run: bool = False, batch: int = 500
) -> list[str]:
    """Ids of invites expired, used up or revoked longer than ``retention_s`` ago (deleted
    unless ``dry_run``), at most ``batch`` per call so a live hub never waits long."""
    cutoff = clock.now() - timedelta(seconds=retention_s)
    ids = list(
        session.scalars(
            select(Invite.id)
            .where(
                or_(
                    Invite.expires_at <= cutoff,
                    Invite.revoked_at <= cutoff,
                    (Invite.uses_count >= Invite.uses_allowed) & (Invite.created_at <= cutoff),
                )
            )
            .order_by(Invite.id)
            .limit(batch)
        )
    )
    if ids and not dry_run:
        session.execute(delete(Invite).where(Invite.id.in_(ids)))
    return ids
