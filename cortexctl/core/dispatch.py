"""What the hub's reconciler does on a pass, decided over one session: which streams to
close (revoked, rotated credential, superseded by a newer stream of the node on another
hub), which policies to push, which pending tasks to claim for which stream, and which
in-flight tasks ended in the journal. The reconciler only applies the ``Plan`` to its
streams. Tasks and policies go to a node's newest stream only: the one whose generation
its presence row holds (``core.presence.claim_stream``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from cortexctl.core import hubs, journal
from cortexctl.core.sandbox import EffectivePolicy, SandboxDefaults, effective_policy
from cortexctl.core.views import Assignment
from cortexctl.store.models import Node, Presence, Task

A = TypeVar("A")


class LiveStream(Protocol):
    """What planning needs to know of a node's open stream."""

    @property
    def stream_id(self) -> str: ...
    @property
    def policy_revision_sent(self) -> int: ...
    @property
    def in_flight(self) -> set[str]: ...
    @property
    def gen(self) -> int: ...


@dataclass
class Plan(Generic[A]):
    policies: dict[str, EffectivePolicy] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    rotated: set[str] = field(default_factory=set)
    assignments: dict[str, list[A]] = field(default_factory=dict)  # node id -> claimed tasks
    ended: dict[str, str] = field(default_factory=dict)  # task id -> terminal state
    # node id -> (hub id, generation) of the newer stream that holds its presence row
    superseded: dict[str, tuple[str, int]] = field(default_factory=dict)


def plan(
    session: Session,
    streams: Mapping[str, LiveStream],
    cached: Mapping[str, str],
    *,
    member: hubs.Member,
    defaults: SandboxDefaults,
    draining: bool,
    assign: Callable[[Assignment], A],
) -> Plan[A]:
    """Plan one pass for the open ``streams`` (by node id) and the credentials this hub has
    ``cached`` (node id -> hash). Claimed tasks become DISPATCHED for their stream and are
    handed to ``assign`` as ``Assignment`` views inside the transaction (the hub turns
    them into messages); a
    draining hub claims nothing, and a hub another took over (``Fenced``) neither."""
    result: Plan[A] = Plan()
    ids = set(streams) | set(cached)
    if not ids:
        return result
    # Columns only, not ORM objects: this runs on every change with every stream in it,
    # and a worker thread busy building objects holds the GIL the event loop needs.
    rows = session.execute(
        select(
            Node.id,
            Node.revoked_at,
            Node.credential_hash,
            Node.policy_revision,
            Presence.hub_id,
            Presence.stream_gen,
        )
        .outerjoin(Presence, Presence.node_id == Node.id)
        .where(Node.id.in_(ids))
    )
    stale_policy: set[str] = set()
    live: set[str] = set()
    for node_id, revoked_at, credential_hash, revision, owner_hub, owner_gen in rows:
        if revoked_at is not None:
            result.revoked.add(node_id)
        elif node_id in cached and cached[node_id] != credential_hash:
            result.rotated.add(node_id)
        elif node_id in streams:
            if owner_gen is not None and owner_gen > streams[node_id].gen:
                # A newer stream of the node holds the row: this one gets nothing more.
                if owner_hub != member.hub_id:
                    result.superseded[node_id] = (owner_hub, owner_gen)
                continue
            live.add(node_id)
            if revision > streams[node_id].policy_revision_sent:
                stale_policy.add(node_id)
    pending = (
        set(
            session.scalars(
                select(Task.node_id)
                .where(Task.state == journal.PENDING, Task.node_id.in_(live))
                .distinct()
            )
        )
        if live
        else set()
    )
    if pending:
        # Claim only for streams that still hold the row, and hold it (FOR SHARE) until
        # this pass commits: a stream opening on another hub meanwhile waits, and finds
        # the tasks claimed here when its node reports what it holds.
        held = {node_id: streams[node_id].gen for node_id in pending if streams[node_id].gen}
        pending -= set(held) - holding_streams(session, held)
    wanted = stale_policy | pending
    epoch = hubs.hold(session, member) if pending and not draining else 0
    if wanted:
        for node in session.scalars(select(Node).where(Node.id.in_(wanted))):
            if node.id in stale_policy:
                result.policies[node.id] = effective_policy(node, defaults)
            if node.id not in pending or draining:
                continue  # a draining hub sends no new work
            claimed = journal.claim_pending(
                session,
                node,
                hub_id=member.hub_id,
                epoch=epoch,
                stream_id=streams[node.id].stream_id,
                defaults=defaults,
            )
            if claimed:
                result.assignments[node.id] = [assign(Assignment.of(task)) for task in claimed]
    in_flight = [task for stream in streams.values() for task in stream.in_flight]
    result.ended = journal.terminal_among(session, in_flight)
    return result


def holding_streams(session: Session, gens: Mapping[str, int]) -> set[str]:
    """The nodes whose presence row is still held by the stream of generation ``gens[node]``
    (no newer stream claimed it), share-locked until the caller's transaction ends."""
    if not gens:
        return set()
    rows = session.execute(
        select(Presence.node_id, Presence.stream_gen)
        .where(Presence.node_id.in_(sorted(gens)))
        .order_by(Presence.node_id)
        .with_for_update(read=True)
    )
    return {node_id for node_id, gen in rows if gen <= gens[node_id]}
