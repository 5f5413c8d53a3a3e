"""Nodes: join with an invite, rejoin with a credential, look up, set sandbox, revoke."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from cortexctl.core import changes, clock, journal
from cortexctl.core.invites import consume_invite
from cortexctl.core.presence import NodePresence, presence_of
from cortexctl.core.sandbox import (
    SandboxDefaults,
    check_allowed_commands,
    check_mode,
    effective_policy,
)
from cortexctl.core.secrets import (
    NODE_PREFIX,
    hash_secret,
    make_token,
    new_id,
    new_secret,
    secret_matches,
    split_token,
)
from cortexctl.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from cortexctl.store.models import Node

_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")
MAX_LABELS = 64
MAX_LABEL_LEN = 256


@dataclass(frozen=True)
class Joined:
    node: Node
    credential: str  # set on first join only; the hub keeps its hash


@dataclass(frozen=True)
class NodeView:
    id: str
    name: str
    hostname: str
    online: bool
    status: str  # online | stale | offline | revoked
    sandbox: str
    sandbox_configured: bool
    allowed_commands: list[str]
    policy_revision: int
    policy_acked: int  # the revision the node last confirmed it applies
    labels: dict[str, Any]
    agent_version: str
    hub_id: str | None
    last_heartbeat: datetime | None
    created_at: datetime
    revoked: bool
    running_tasks: int


@dataclass(frozen=True)
class PolicyChange:
    node_id: str
    name: str
    sandbox: str
    allowed_commands: list[str]
    revision: int


def clean_name(requested: str, fallback: str) -> str:
    name = _NAME_OK.sub("-", requested or fallback or "node").strip("-.")[:63]
    return name or "node"


def check_capabilities(capabilities: Sequence[str]) -> None:
    if len(capabilities) > 64 or any(len(c) > 64 or "\0" in c for c in capabilities):
        raise InvalidArgument("bad capabilities: at most 64 names of 64 characters, no NUL")


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(f"too many labels ({len(labels)}); at most {MAX_LABELS}")
    for key, value in labels.items():
        if not key or len(key) > 63 or _NAME_OK.search(key):
            raise InvalidArgument(f"bad label key {key!r}: use 1-63 of A-Z a-z 0-9 . _ -")
        if len(value) > MAX_LABEL_LEN or "\0" in value:
            raise InvalidArgument(
                f"bad label value for {key!r}: at most {MAX_LABEL_LEN} characters, no NUL"
            )
    return dict(labels)


def check_text(**fields: str) -> None:
    """Peer-supplied strings: no NUL (PostgreSQL text cannot hold it) and a sane length."""
    for name, value in fields.items():
        if "\0" in value or len(value) > 1024:
            raise InvalidArgument(f"bad {name}: at most 1024 characters, no NUL")


def _unique_name(session: Session, wanted: str) -> str:
    taken = set(
        session.scalars(
            select(Node.name).where(or_(Node.name == wanted, Node.name.like(f"{wanted}-%")))
        )
    )
    if wanted not in taken:
        return wanted
    suffix = 2
    while f"{wanted}-{suffix}" in taken:
        suffix += 1
    return f"{wanted}-{suffix}"


def join_with_invite(
    session: Session,
    token: str,
    *,
    hostname: str,
    requested_name: str,
    agent_version: str,
    labels: dict[str, str],
    capabilities: Sequence[str],
) -> Joined:
    """First join: spend an invite use and create the node with a fresh credential."""
    check_text(hostname=hostname, requested_name=requested_name, agent_version=agent_version)
    check_capabilities(capabilities)
    labels = check_labels(labels)
    invite = consume_invite(session, token)
    node_id = new_id("nd_")
    secret = new_secret()
    node = Node(
        id=node_id,
        name=_unique_name(session, clean_name(requested_name, hostname)),
        hostname=hostname[:255],
        agent_version=agent_version[:64],
        labels={**(invite.labels or {}), **labels},
        capabilities=list(capabilities),
        credential_hash=hash_secret(secret),
        invite_id=invite.id,
        sandbox_mode=invite.sandbox_mode,
        allowed_commands=None,
        policy_revision=1,
        created_at=clock.now(),
        last_seen_at=None,
        revoked_at=None,
    )
    session.add(node)
    changes.bump(session)
    session.flush()
    return Joined(node=node, credential=make_token(NODE_PREFIX, node_id, secret))


def authenticate(session: Session, credential: str) -> Node:
    """The node behind a credential; UNAUTHENTICATED if wrong, PERMISSION_DENIED if revoked."""
    parts = split_token(NODE_PREFIX, credential)
    if parts is None:
        raise Unauthenticated("malformed node credential; rejoin with a new invite")
    node = session.get(Node, parts[0])
    if node is None or not secret_matches(parts[1], node.credential_hash):
        raise Unauthenticated("unknown node credential; rejoin with a new invite")
    if node.revoked_at is not None:
        raise PermissionDenied(f"node {node.name} ({node.id}) has been revoked by an operator")
    return node


def rejoin(
    session: Session,
    credential: str,
    *,
    hostname: str,
    agent_version: str,
    labels: dict[str, str],
    capabilities: Sequence[str],
) -> Node:
    check_text(hostname=hostname, agent_version=agent_version)
    check_capabilities(capabilities)
    node = authenticate(session, credential)
    node.hostname = hostname[:255] or node.hostname
    node.agent_version = agent_version[:64]
    if labels:
        node.labels = {**(node.labels or {}), **check_labels(labels)}
    if capabilities:
        node.capabilities = list(capabilities)
    return node


def resolve_node(session: Session, ref: str) -> Node:
    """A node by id or by name."""
    node = session.get(Node, ref) or session.scalar(select(Node).where(Node.name == ref))
    if node is None:
        raise NotFound(f"no node with id or name {ref!r}; see `cortexctl nodes list`")
    return node


def view(node: Node, presence: NodePresence | None, defaults: SandboxDefaults) -> NodeView:
    policy = effective_policy(node, defaults)
    status = "revoked" if node.revoked_at else (presence.status if presence else "offline")
    return NodeView(
        id=node.id,
        name=node.name,
        hostname=node.hostname,
        online=status == "online",
        status=status,
        sandbox=policy.mode,
        sandbox_configured=policy.configured,
        allowed_commands=list(policy.allowed_commands),
        policy_revision=node.policy_revision,
        policy_acked=presence.policy_revision_acked if presence else 0,
        labels=dict(node.labels or {}),
        agent_version=node.agent_version,
        hub_id=presence.hub_id if presence and presence.connected else None,
        last_heartbeat=presence.last_heartbeat if presence else None,
        created_at=node.created_at,
        revoked=node.revoked_at is not None,
        running_tasks=presence.running_tasks if presence and presence.connected else 0,
    )


def list_nodes(
    session: Session, defaults: SandboxDefaults, *, include_revoked: bool = True
) -> list[NodeView]:
    query = select(Node).order_by(Node.name)
    if not include_revoked:
        query = query.where(Node.revoked_at.is_(None))
    nodes = session.scalars(query).all()
    presence = presence_of(session, [node.id for node in nodes])
    return [view(node, presence.get(node.id), defaults) for node in nodes]


def show_node(session: Session, ref: str, defaults: SandboxDefaults) -> NodeView:
    node = resolve_node(session, ref)
    return view(node, presence_of(session, [node.id]).get(node.id), defaults)


def set_sandbox(
    session: Session,
    refs: Sequence[str],
    *,
    all_nodes: bool,
    mode: str,
    allowed_commands: Sequence[str] | None,
    defaults: SandboxDefaults,
) -> list[PolicyChange]:
    """Set the sandbox mode (and optionally the allow-list) of nodes; bumps their revision."""
    check_mode(mode)
    allowed = check_allowed_commands(allowed_commands) if allowed_commands is not None else None
    if all_nodes:
        nodes = list(
            session.scalars(select(Node).where(Node.revoked_at.is_(None)).order_by(Node.name))
        )
    else:
        nodes = [resolve_node(session, ref) for ref in dict.fromkeys(refs)]
    policies = []
    for node in nodes:
        values: dict[str, Any] = {"sandbox_mode": mode, "policy_revision": Node.policy_revision + 1}
        if allowed is not None:
            values["allowed_commands"] = allowed
        session.execute(
            update(Node)
            .where(Node.id == node.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        session.refresh(node)
        policy = effective_policy(node, defaults)
        policies.append(
            PolicyChange(
                node.id, node.name, policy.mode, list(policy.allowed_commands), policy.revision
            )
        )
    if nodes:
        changes.bump(session)
    return policies


def rotate_credential(session: Session, ref: str) -> Joined:
    """Give a node a new credential; the old one stops working and its stream ends."""
    node = resolve_node(session, ref)
    if node.revoked_at is not None:
        raise PermissionDenied(f"node {node.name} ({node.id}) is revoked; it gets no credential")
    secret = new_secret()
    node.credential_hash = hash_secret(secret)
    changes.bump(session)
    return Joined(node=node, credential=make_token(NODE_PREFIX, node.id, secret))


def revoke_node(session: Session, ref: str) -> tuple[Node, int]:
    """Revoke a node: its credential stops working and its unfinished tasks fail."""
    node = resolve_node(session, ref)
    if node.revoked_at is None:
        node.revoked_at = clock.now()
        changes.bump(session)
    failed = journal.fail_node_tasks(session, node.id, f"node {node.name} ({node.id}) was revoked")
    return node, failed
