"""Invites: a token shown once, stored as a hash, with a TTL, a number of uses, labels,
revocation and an optional sandbox mode for the nodes that join with it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from cortexctl.core import clock
from cortexctl.core.names import check_name, name_taken
from cortexctl.core.refs import unique_match
from cortexctl.core.sandbox import check_mode
from cortexctl.core.secrets import (
    INVITE_PREFIX,
    hash_secret,
    mint,
    new_id,
    secret_matches,
    split_token,
    token_state,
)
from cortexctl.core.views import InviteView as InviteView
from cortexctl.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from cortexctl.store.models import Invite


@dataclass(frozen=True)
class CreatedInvite:
    invite: InviteView
    token: str  # shown once, never stored


def invite_state(invite: Invite, at: datetime) -> str:
    used_up = invite.uses_count >= invite.uses_allowed
    return token_state(invite.revoked_at, invite.expires_at, at, used_up=used_up)


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
        name=invite.node_name,
        name_prefix=invite.name_prefix,
    )


def create_invite(
    session: Session,
    *,
    ttl_s: float,
    uses: int = 1,
    labels: dict[str, str] | None = None,
    sandbox: str | None = None,
    note: str = "",
    name: str | None = None,
    name_prefix: str | None = None,
) -> CreatedInvite:
    """A new invite; ``name`` fixes the joining node's name, ``name_prefix`` its start."""
    if uses < 1:
        raise InvalidArgument(f"bad --uses {uses}: an invite needs at least 1 use")
    if name and name_prefix:
        raise InvalidArgument("give --name or --name-prefix, not both")
    if name:
        check_name(name, "--name")
        if uses != 1:
            raise InvalidArgument(
                f"--name {name} names one node: it needs --uses 1 (for several nodes, "
                "give --name-prefix)"
            )
        if name_taken(session, name) is not None:
            raise AlreadyExists(
                f"node name {name!r} is taken; delete or rename that node first "
                "(a revoked node keeps its name until it is deleted)"
            )
    if name_prefix:
        check_name(name_prefix, "--name-prefix")
        if len(name_prefix) > 40:
            raise InvalidArgument(
                f"bad --name-prefix {name_prefix!r}: at most 40 characters, to leave room "
                "for the rest of the name"
            )
    if ttl_s <= 0:
        raise InvalidArgument("bad --ttl: an invite must live for some time, e.g. 1h")
    if sandbox is not None:
        check_mode(sandbox)
    now = clock.now()
    invite_id = new_id(INVITE_ID_PREFIX)
    minted = mint(INVITE_PREFIX, invite_id)
    invite = Invite(
        id=invite_id,
        secret_hash=minted.secret_hash,
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
        uses_allowed=uses,
        uses_count=0,
        revoked_at=None,
        labels=dict(labels or {}),
        sandbox_mode=sandbox,
        note=note,
        node_name=name or None,
        name_prefix=name_prefix or None,
    )
    session.add(invite)
    session.flush()
    return CreatedInvite(invite=view(invite, now), token=minted.token)


def list_invites(session: Session, *, include_inactive: bool = False) -> list[InviteView]:
    now = clock.now()
    rows = session.scalars(select(Invite).order_by(Invite.created_at)).all()
    views = [view(row, now) for row in rows]
    return views if include_inactive else [v for v in views if v.state == "active"]


INVITE_ID_PREFIX = "inv_"


def get_invite(session: Session, invite_id: str) -> Invite:
    """An invite by id or by a unique prefix of its id (``inv_`` may be left out)."""
    invite = session.get(Invite, invite_id)
    if invite is None:
        match = unique_match(session, Invite.id, INVITE_ID_PREFIX, invite_id, "invite")
        invite = session.get(Invite, match) if match else None
    if invite is None:
        raise NotFound(f"no invite {invite_id!r}; see `cortexctl invites list --all`")
    return invite


def revoke_invite(session: Session, invite_id: str, *, dry_run: bool = False) -> InviteView:
    """Revoke the invite; with ``dry_run`` only what it would be, nothing changed."""
    invite = get_invite(session, invite_id)
    if dry_run:
        return dataclasses.replace(view(invite), revoked=True, state="revoked")
    if invite.revoked_at is None:
        invite.revoked_at = clock.now()
    return view(invite)


def _token_parts(token: str) -> tuple[str, str]:
    parts = split_token(INVITE_PREFIX, token)
    if parts is None:
        raise Unauthenticated(
            "malformed invite token: expected the whole token printed by `cortexctl invites create`"
        )
    return parts


def consume_invite(session: Session, token: str) -> Invite:
    """Spend one use of the invite behind ``token``, atomically, or say why it cannot be.

    The use is taken by one conditional ``UPDATE ... RETURNING`` (the secret's hash in its
    WHERE), so two joins racing for the last use cannot both win, on SQLite and PostgreSQL
    alike, and a join that may go ahead costs one statement. Only a refusal reads the row
    again, to say why. The caller should take it last in its transaction: on PostgreSQL
    the invite's row stays locked until the commit (one invite of many uses is a contended
    row during a roll-out).
    """
    invite_id, secret = _token_parts(token)
    now = clock.now()
    taken = session.scalars(
        update(Invite)
        .where(
            Invite.id == invite_id,
            # A SHA-256 of a 256-bit random secret: equality in SQL reveals nothing usable.
            Invite.secret_hash == hash_secret(secret),
            Invite.revoked_at.is_(None),
            Invite.uses_count < Invite.uses_allowed,
            Invite.expires_at > now,
        )
        .values(uses_count=Invite.uses_count + 1)
        .returning(Invite)
        .execution_options(synchronize_session=False)
    ).first()
    if taken is not None:
        return taken
    raise _refusal(session, invite_id, secret, now)


def check_invite(session: Session, token: str) -> Invite:
    """The invite behind ``token`` if it could be spent now (nothing is taken), else the
    same refusal as ``consume_invite``: a join reads its rules first, decides, writes the
    node, and takes the use last, holding the invite's row for the least time."""
    invite_id, secret = _token_parts(token)
    now = clock.now()
    invite = session.get(Invite, invite_id)
    if (
        invite is None
        or invite_state(invite, now) != "active"
        or not secret_matches(secret, invite.secret_hash)
    ):
        raise _refusal(session, invite_id, secret, now)
    return invite


def _refusal(session: Session, invite_id: str, secret: str, now: datetime) -> Unauthenticated:
    """Why the invite ``invite_id`` cannot be spent with ``secret`` now."""
    invite = session.get(Invite, invite_id, populate_existing=True)
    if invite is None or not secret_matches(secret, invite.secret_hash):
        return Unauthenticated("unknown invite token; ask the operator for a new invite")
    reason = {
        "revoked": "has been revoked",
        "used": "has been used up",
        "expired": "has expired",
    }.get(invite_state(invite, now), "cannot be used")
    return Unauthenticated(f"invite {invite_id} {reason}; ask the operator for a new invite")


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
