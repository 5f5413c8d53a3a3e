"""Nodes: join with an invite, rejoin with a credential, look up, set sandbox, revoke."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from cortexctl.core import audit, changes, clock, features, journal
from cortexctl.core.invites import check_invite, consume_invite
from cortexctl.core.labels import node_labels
from cortexctl.core.names import NAME_UNSAFE, clean_name, name_taken
from cortexctl.core.presence import NodePresence, presence_of
from cortexctl.core.refs import AmbiguousRef, prefix_matches
from cortexctl.core.sandbox import (
    EffectivePolicy,
    SandboxDefaults,
    check_env_names,
    check_limits,
    check_mode,
    effective_policy,
    format_pin,
    parse_allow_entries,
)
from cortexctl.core.secrets import NODE_PREFIX, mint, new_id, secret_matches, split_token
from cortexctl.core.selectors import Selector
from cortexctl.core.views import NodeCordon as NodeCordon
from cortexctl.core.views import NodeRenamed as NodeRenamed
from cortexctl.core.views import NodeRevoked as NodeRevoked
from cortexctl.core.views import NodeView as NodeView
from cortexctl.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from cortexctl.store.models import Invite, Node, Presence, SyncLease, Task

NODE_ID_PREFIX = "nd_"
log = logging.getLogger("cortexctl.core")

MAX_LABELS = 64
MAX_LABEL_LEN = 256


@dataclass(frozen=True)
class Joined:
    node: Node
    credential: str  # set on first join only; the hub keeps its hash


@dataclass(frozen=True)
class PolicyChange:
    node_id: str
    name: str
    sandbox: str
    allowed_commands: list[str]
    revision: int
    allowed_prefixes: list[str]
    allowed_env: list[str]
    network: str
    limits: dict[str, int]


def check_capabilities(capabilities: Sequence[str]) -> None:
    if len(capabilities) > 64 or any(len(c) > 64 or "\0" in c for c in capabilities):
        raise InvalidArgument("bad capabilities: at most 64 names of 64 characters, no NUL")


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(f"too many labels ({len(labels)}); at most {MAX_LABELS}")
    for key, value in labels.items():
        if not key or len(key) > 63 or NAME_UNSAFE.search(key):
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


def decide_name(invite: Invite, requested: str, hostname: str) -> str:
    """The name a joining node gets: the operator's (through the invite) wins.

    - an invite with a fixed name gives exactly that name; a node asking for another is
      refused;
    - an invite with a prefix takes the node's requested name if it starts with the prefix
      (else refuses it), and without a requested name gives prefix + hostname (the
      hostname alone if it already starts with the prefix);
    - otherwise the requested name, or the hostname.
    """
    wanted = clean_name(requested, "") if requested else ""
    if invite.node_name:
        if wanted and wanted != invite.node_name:
            raise InvalidArgument(
                f"this invite names the node {invite.node_name!r}; join without --name, "
                f"or with --name {invite.node_name}"
            )
        return invite.node_name
    prefix = invite.name_prefix or ""
    if prefix:
        if wanted:
            if not wanted.startswith(prefix):
                raise InvalidArgument(
                    f"this invite gives names starting with {prefix!r}; join with "
                    f"--name {prefix}{wanted}, or without --name ({prefix}<hostname>)"
                )
            return wanted
        base = clean_name(hostname, "node")
        return base if base.startswith(prefix) else clean_name(prefix + base, "")
    return clean_name(requested, hostname)


def _name_in_use(name: str) -> AlreadyExists:
    # Said to a joining node: nothing about the node that holds the name.
    return AlreadyExists(
        f"node name {name!r} is already taken on this hub (the invite use was not spent); "
        "join with another --name, or ask the operator to delete or rename the node "
        "that holds it"
    )


def join_with_invite(
    session: Session,
    token: str,
    *,
    hostname: str,
    requested_name: str,
    agent_version: str,
    labels: dict[str, str],
    capabilities: Sequence[str],
    source: str = "",
) -> Joined:
    """First join: spend an invite use and create the node with a fresh credential
    (recorded in the audit log, ``source`` being the peer's address).

    A few statements, the contended ones last: read the invite's rules, insert the node
    (a taken name is the unique index's answer, no query first), add the audit entry, then
    take the use (one conditional UPDATE) and bump the change counter. On PostgreSQL the
    invite's and the counter's rows are locked only from there to the commit. Any refusal
    raises, which rolls the transaction back: the use is not spent.
    """
    check_text(hostname=hostname, requested_name=requested_name, agent_version=agent_version)
    check_capabilities(capabilities)
    labels = check_labels(labels)
    invite = check_invite(session, token)
    name = decide_name(invite, requested_name, hostname)
    node_id = new_id("nd_")
    minted = mint(NODE_PREFIX, node_id)
    values: dict[str, Any] = {
        "id": node_id,
        "name": name,
        "hostname": hostname[:255],
        "agent_version": agent_version[:64],
        "labels": dict(invite.labels or {}),  # trusted: the node cannot override them
        "self_labels": labels,
        "capabilities": list(capabilities),
        "credential_hash": minted.secret_hash,
        "invite_id": invite.id,
        "sandbox_mode": invite.sandbox_mode,
        "allowed_commands": None,
        "policy_revision": 1,
        "created_at": clock.now(),
        "last_seen_at": None,
        "revoked_at": None,
        "mirror_bytes": 0,
        "mirror_files": 0,
    }
    if not _insert_node(session, values):
        holder = name_taken(session, name)
        log.info(
            "refused a join as %r: held by node %s%s",
            name,
            holder.id if holder else "(gone since)",
            " (revoked; `nodes delete` frees the name)" if holder and holder.revoked_at else "",
        )
        raise _name_in_use(name)
    audit.record(
        session,
        audit.Actor(name=name, kind="node", source=source),
        "nodes.join",
        node_id,
        detail={"invite": invite.id, "hostname": values["hostname"]},
    )
    consume_invite(session, token)
    changes.bump(session)
    return Joined(node=Node(**values), credential=minted.token)


def _insert_node(session: Session, values: dict[str, Any]) -> bool:
    """Insert a node row unless its name is taken (then False): one statement."""
    if session.get_bind().dialect.name == "postgresql":
        statement: Any = pg_insert(Node).values(**values)
    else:
        statement = sqlite_insert(Node).values(**values)
    inserted = session.execute(
        statement.on_conflict_do_nothing(index_elements=[Node.name]).returning(Node.id)
    ).first()
    return inserted is not None


@dataclass(frozen=True)
class HandshakeRequest:
    """What a node sends to join (``invite_token``) or rejoin (``node_credential``)."""

    invite_token: str
    node_credential: str
    hostname: str
    requested_name: str
    agent_version: str
    labels: dict[str, str]
    capabilities: tuple[str, ...]
    source: str = ""  # the peer's address, for the audit log


@dataclass(frozen=True)
class Handshake:
    """What the hub answers: the node, its policy, and a credential on first join only."""

    node_id: str
    name: str
    policy: EffectivePolicy
    credential: str  # "" on a rejoin
    joined: bool  # first join (else rejoin)


def handshake(session: Session, request: HandshakeRequest, defaults: SandboxDefaults) -> Handshake:
    """A node's handshake, first join or rejoin: exactly one of invite token or
    credential, checked and recorded, and the sandbox policy the node gets."""
    if bool(request.invite_token) == bool(request.node_credential):
        raise InvalidArgument(
            "send exactly one of invite_token (first join) or node_credential (rejoin)"
        )
    if request.invite_token:
        joined = join_with_invite(
            session,
            request.invite_token,
            hostname=request.hostname,
            requested_name=request.requested_name,
            agent_version=request.agent_version,
            labels=request.labels,
            capabilities=request.capabilities,
            source=request.source,
        )
        node, credential = joined.node, joined.credential
    else:
        node = rejoin(
            session,
            request.node_credential,
            hostname=request.hostname,
            agent_version=request.agent_version,
            labels=request.labels,
            capabilities=request.capabilities,
        )
        credential = ""
    return Handshake(
        node_id=node.id,
        name=node.name,
        policy=effective_policy(node, defaults),
        credential=credential,
        joined=bool(credential),
    )


def authenticate(session: Session, credential: str) -> Node:
    """The node behind a credential; UNAUTHENTICATED if wrong, PERMISSION_DENIED if revoked."""
    parts = split_token(NODE_PREFIX, credential)
    return verify_credential(None if parts is None else session.get(Node, parts[0]), credential)


def verify_credential(node: Node | None, credential: str) -> Node:
    """``node`` if ``credential`` is its own and it is not revoked (``node``: the row of the
    credential's node id, or None when there is none)."""
    parts = split_token(NODE_PREFIX, credential)
    if parts is None:
        raise Unauthenticated("malformed node credential; rejoin with a new invite")
    if node is None or node.id != parts[0] or not secret_matches(parts[1], node.credential_hash):
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
        # The node's own say about itself; trusted labels are the invite's or an operator's.
        node.self_labels = check_labels(labels)
    # Always what the agent says now: an older agent that reports less must not keep the
    # features a newer one reported (dispatch fails closed on what is missing).
    node.capabilities = list(capabilities)
    return node


def resolve_node(session: Session, ref: str) -> Node:
    """A node by id, by name, or by a unique prefix of its id (an exact name wins)."""
    node = session.get(Node, ref) or session.scalar(select(Node).where(Node.name == ref))
    if node is not None:
        return node
    matches = prefix_matches(session, Node.id, NODE_ID_PREFIX, ref)
    if len(matches) == 1:
        found = session.get(Node, matches[0])
        assert found is not None
        return found
    if matches:
        names = dict(session.execute(select(Node.id, Node.name).where(Node.id.in_(matches))).all())
        shown = ", ".join(f"{node_id} ({names.get(node_id, '')})" for node_id in matches[:10])
        raise AmbiguousRef(
            f"{ref!r} matches {len(matches)} nodes: {shown}; give more of the id, or the name"
        )
    raise NotFound(f"no node with id or name {ref!r}; see `cortexctl nodes list`")


def select_nodes(
    session: Session,
    selector: Selector,
    *,
    include_revoked: bool = True,
    include_self_reported: bool = False,
) -> list[Node]:
    """Nodes whose labels match ``selector``, by name.

    Only trusted labels (the invite's, an operator's) count unless
    ``include_self_reported``: a node cannot put itself under a selector that changes a
    sandbox or revokes by labelling itself.
    """
    query = select(Node).order_by(Node.name)
    if not include_revoked:
        query = query.where(Node.revoked_at.is_(None))
    return [
        node
        for node in session.scalars(query)
        if selector.matches(
            node_labels(node).effective if include_self_reported else node_labels(node).trusted
        )
    ]


def view(node: Node, presence: NodePresence | None, defaults: SandboxDefaults) -> NodeView:
    policy = effective_policy(node, defaults)
    status = "revoked" if node.revoked_at else (presence.status if presence else "offline")
    labels = node_labels(node)
    return NodeView(
        id=node.id,
        name=node.name,
        hostname=node.hostname,
        online=status == "online",
        status=status,
        sandbox=policy.mode,
        sandbox_configured=policy.configured,
        allowed_commands=list(policy.allowed_commands),
        allowed_prefixes=[format_pin(pin) for pin in policy.allowed_prefixes],
        allowed_env=list(policy.allowed_env),
        network="deny" if policy.deny_network else "allow",
        limits=asdict(policy.limits),
        isolation=features.isolation_of(node.capabilities or []),
        capabilities=list(node.capabilities or []),
        policy_revision=node.policy_revision,
        policy_acked=presence.policy_revision_acked if presence else 0,
        labels=labels.effective,
        trusted_labels=labels.trusted,
        self_labels=labels.reported,
        agent_version=node.agent_version,
        hub_id=presence.hub_id if presence and presence.connected else None,
        last_heartbeat=presence.last_heartbeat if presence else None,
        created_at=node.created_at,
        revoked=node.revoked_at is not None,
        running_tasks=presence.running_tasks if presence and presence.connected else 0,
        cordoned=node.cordoned_at is not None,
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


_POLICY_COLUMNS = (
    "sandbox_mode",
    "allowed_commands",
    "allowed_prefixes",
    "allowed_env",
    "deny_network",
    "limits",
)


def _policy_change(node: Node, policy: EffectivePolicy) -> PolicyChange:
    return PolicyChange(
        node_id=node.id,
        name=node.name,
        sandbox=policy.mode,
        allowed_commands=list(policy.allowed_commands),
        revision=policy.revision,
        allowed_prefixes=[format_pin(pin) for pin in policy.allowed_prefixes],
        allowed_env=list(policy.allowed_env),
        network="deny" if policy.deny_network else "allow",
        limits=asdict(policy.limits),
    )


def set_sandbox(
    session: Session,
    refs: Sequence[str],
    *,
    all_nodes: bool,
    mode: str | None,
    allowed_commands: Sequence[str] | None,
    defaults: SandboxDefaults,
    add_env: Sequence[str] = (),
    clear_env: bool = False,
    deny_network: bool | None = None,
    limits: Mapping[str, int] | None = None,
    reset_limits: bool = False,
    selector: Selector | None = None,
    include_self_reported: bool = False,
    dry_run: bool = False,
) -> list[PolicyChange]:
    """Change the sandbox policy of nodes (only what is given); bumps their revision.

    ``allowed_commands`` replaces the allow-list: bare names and argv pins ("git status");
    ``add_env`` adds env names (``clear_env`` first empties the node's own list). With
    ``dry_run`` it returns the policies the nodes would get and changes nothing.
    """
    if mode is not None:
        check_mode(mode)
    entries = parse_allow_entries(allowed_commands) if allowed_commands is not None else None
    env_names = check_env_names(add_env)
    new_limits = check_limits(limits or {})
    nodes = target_nodes(
        session,
        refs,
        all_nodes=all_nodes,
        selector=selector,
        include_self_reported=include_self_reported,
    )
    policies = []
    for node in nodes:
        values: dict[str, Any] = {}
        if mode is not None:
            values["sandbox_mode"] = mode
        if entries is not None:
            values["allowed_commands"], values["allowed_prefixes"] = entries
        if clear_env or env_names:
            kept = [] if clear_env else list(node.allowed_env or [])
            values["allowed_env"] = sorted({*kept, *env_names})
        if deny_network is not None:
            values["deny_network"] = deny_network
        if reset_limits or new_limits:
            values["limits"] = {**({} if reset_limits else dict(node.limits or {})), **new_limits}
        if dry_run:
            would_be = SimpleNamespace(
                **{attr: values.get(attr, getattr(node, attr)) for attr in _POLICY_COLUMNS},
                policy_revision=node.policy_revision + 1,
            )
            policies.append(_policy_change(node, effective_policy(cast(Node, would_be), defaults)))
            continue
        values["policy_revision"] = Node.policy_revision + 1
        session.execute(
            update(Node)
            .where(Node.id == node.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        session.refresh(node)
        policies.append(_policy_change(node, effective_policy(node, defaults)))
    if nodes and not dry_run:
        changes.bump(session)
    return policies


def rotate_credential(session: Session, ref: str) -> Joined:
    """Give a node a new credential; the old one stops working and its stream ends."""
    node = resolve_node(session, ref)
    if node.revoked_at is not None:
        raise PermissionDenied(f"node {node.name} ({node.id}) is revoked; it gets no credential")
    minted = mint(NODE_PREFIX, node.id)
    node.credential_hash = minted.secret_hash
    changes.bump(session)
    return Joined(node=node, credential=minted.token)


def target_nodes(
    session: Session,
    refs: Sequence[str],
    *,
    all_nodes: bool = False,
    selector: Selector | None = None,
    include_self_reported: bool = False,
) -> list[Node]:
    """The nodes a command acts on: named ones, every active one, or a selector's (on
    trusted labels unless ``include_self_reported``)."""
    if all_nodes:
        return list(
            session.scalars(select(Node).where(Node.revoked_at.is_(None)).order_by(Node.name))
        )
    if selector is not None:
        return select_nodes(
            session, selector, include_revoked=False, include_self_reported=include_self_reported
        )
    found: dict[str, Node] = {}
    for ref in dict.fromkeys(refs):
        node = resolve_node(session, ref)
        found.setdefault(node.id, node)
    return list(found.values())


def unfinished_tasks(session: Session, node_id: str) -> int:
    return len(
        session.scalars(
            select(Task.id).where(Task.node_id == node_id, Task.state.in_(journal.ACTIVE))
        ).all()
    )


def revoke_node(session: Session, ref: str, *, dry_run: bool = False) -> tuple[Node, int]:
    """Revoke a node: its credential stops working and its unfinished tasks fail.

    With ``dry_run``, the count is of the tasks that would fail, and nothing changes.
    """
    node = resolve_node(session, ref)
    if dry_run:
        return node, unfinished_tasks(session, node.id)
    if node.revoked_at is None:
        node.revoked_at = clock.now()
        changes.bump(session)
    failed = journal.fail_node_tasks(session, node.id, f"node {node.name} ({node.id}) was revoked")
    return node, failed


def revoke_nodes(
    session: Session,
    refs: Sequence[str],
    *,
    selector: Selector | None = None,
    include_self_reported: bool = False,
    dry_run: bool = False,
) -> list[NodeRevoked]:
    """Revoke named nodes, or every active node a selector matches (on trusted labels
    unless ``include_self_reported``)."""
    results = []
    for node in target_nodes(
        session, refs, selector=selector, include_self_reported=include_self_reported
    ):
        revoked, failed = revoke_node(session, node.id, dry_run=dry_run)
        results.append(NodeRevoked(revoked.id, revoked.name, not dry_run, failed, dry_run))
    return results


def rename_node(session: Session, ref: str, new_name: str, *, dry_run: bool = False) -> Node:
    """Give a node another name; names are unique (taken → Conflict, exit 5)."""
    node = resolve_node(session, ref)
    wanted = new_name.strip()
    if not wanted or clean_name(wanted, "") != wanted:
        raise InvalidArgument(
            f"bad node name {new_name!r}: use 1-63 of A-Z a-z 0-9 . _ -, "
            "not starting or ending with . or -"
        )
    if wanted == node.name:
        return node
    if wanted.startswith(NODE_ID_PREFIX):
        raise InvalidArgument(f"bad node name {wanted!r}: it must not look like a node id")
    holder = session.scalar(select(Node).where(Node.name == wanted))
    if holder is not None:
        hint = (
            f"delete it first with `cortexctl nodes delete {holder.id}`"
            if holder.revoked_at is not None
            else "rename that one first, or pick another name"
        )
        raise Conflict(f"the name {wanted!r} is taken by node {holder.id}; {hint}")
    if not dry_run:
        node.name = wanted
        changes.bump(session)
        session.flush()
    return node


def set_cordon(session: Session, ref: str, cordoned: bool, *, dry_run: bool = False) -> Node:
    """Cordon (no new tasks dispatched or accepted) or uncordon a node; idempotent."""
    node = resolve_node(session, ref)
    if dry_run or (node.cordoned_at is not None) == cordoned:
        return node
    if cordoned and node.revoked_at is not None:
        raise Conflict(f"node {node.name} ({node.id}) is revoked; it runs no tasks anyway")
    node.cordoned_at = clock.now() if cordoned else None
    changes.bump(session)
    return node


def in_flight_tasks(session: Session, node_id: str) -> list[str]:
    """Ids of a node's tasks that were dispatched and have not ended."""
    return list(
        session.scalars(
            select(Task.id)
            .where(Task.node_id == node_id, Task.state.in_(journal.IN_FLIGHT))
            .order_by(Task.id)
        )
    )


DRAIN_POLL_S = 0.5


def wait_drained(
    sessions: journal.Sessions,
    node_id: str,
    *,
    deadline: clock.Deadline | None = None,
    pause: clock.Pause | None = None,
) -> list[str]:
    """Poll until the node runs no task (return []) or ``deadline`` passes (return the ids
    of the tasks it still runs)."""
    left: list[str] = []

    def drained() -> bool:
        nonlocal left
        with sessions() as session:
            left = in_flight_tasks(session, node_id)
        return not left

    clock.poll_until(drained, deadline=deadline, pause=pause or clock.fixed_interval(DRAIN_POLL_S))
    return left


@dataclass(frozen=True)
class NodeDeletion:
    id: str
    name: str
    status: str  # what it was: revoked | offline
    failed_tasks: int  # unfinished tasks ended FAILED before the rows went
    deleted_tasks: int  # journal rows removed with the node
    dry_run: bool


def delete_node_rows(
    session: Session, ref: str, defaults: SandboxDefaults, *, dry_run: bool = False
) -> NodeDeletion:
    """Remove a revoked or offline node, its presence, leases and journal rows; frees its name.

    A connected node is refused: revoke it (or stop its agent) first.
    """
    node = resolve_node(session, ref)
    current = view(node, presence_of(session, [node.id]).get(node.id), defaults)
    if current.status in ("online", "stale"):
        raise Conflict(
            f"node {node.name} ({node.id}) is {current.status}; revoke it first with "
            f"`cortexctl nodes revoke {node.name}` (or stop its agent), then delete it"
        )
    unfinished = unfinished_tasks(session, node.id)
    total = len(session.scalars(select(Task.id).where(Task.node_id == node.id)).all())
    if not dry_run:
        journal.fail_node_tasks(session, node.id, f"node {node.name} ({node.id}) was deleted")
        session.execute(delete(Task).where(Task.node_id == node.id))
        session.execute(delete(SyncLease).where(SyncLease.node_id == node.id))
        session.execute(delete(Presence).where(Presence.node_id == node.id))
        session.execute(delete(Node).where(Node.id == node.id))
        changes.bump(session)
    return NodeDeletion(node.id, node.name, current.status, unfinished, total, dry_run)
