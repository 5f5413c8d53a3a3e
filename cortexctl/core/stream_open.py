"""What a node's new stream starts with, for many opens in one transaction.

A stream open claims the node's presence row (the arbiter of which stream is the node's,
across hubs), loads the node's policy and learns whether the journal holds work of the
node in flight (if not, and the node holds nothing, its first report needs no store
call). Opens arriving together — a reconnect storm after a restart — share one
transaction: the per-transaction cost (the write lock, BEGIN, COMMIT, session set-up) is
paid once per batch instead of once per node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cortexctl.core import nodes, presence
from cortexctl.core.journal import IN_FLIGHT
from cortexctl.core.sandbox import EffectivePolicy, SandboxDefaults, effective_policy
from cortexctl.errors import CortexError, NotFound
from cortexctl.store.models import Node, Task


@dataclass(frozen=True)
class OpenRequest:
    """One stream opening on this hub for an authenticated node."""

    node_id: str
    stream_id: str
    peer: str
    credential: str | None = None  # to verify here; None: the hub verified it recently


@dataclass(frozen=True)
class OpenedStream:
    node_name: str
    policy: EffectivePolicy
    claim: presence.StreamClaim
    work_in_flight: bool  # the journal holds dispatched or running tasks of the node


def open_streams(
    session: Session,
    requests: Sequence[OpenRequest],
    *,
    hub_id: str,
    heartbeat_interval_s: float,
    defaults: SandboxDefaults,
) -> list[OpenedStream | CortexError]:
    """Open each stream in the caller's one transaction; one result per request, in order.

    A request whose credential does not verify (or whose node was deleted since the hub
    verified it) gets its error in place of a result, and the others go on. Presence rows
    are claimed in node id order, the order every batch writer of presence rows locks
    them in (no deadlock with the presence flush or another hub's batch).
    """
    ids = sorted({r.node_id for r in requests})
    found = {node.id: node for node in session.scalars(select(Node).where(Node.id.in_(ids)))}
    busy = set(
        session.scalars(
            select(Task.node_id).where(Task.node_id.in_(ids), Task.state.in_(IN_FLIGHT)).distinct()
        )
    )
    results: list[OpenedStream | CortexError | None] = [None] * len(requests)
    by_node = sorted(range(len(requests)), key=lambda i: requests[i].node_id)  # stable
    for i in by_node:
        request = requests[i]
        node = found.get(request.node_id)
        try:
            if request.credential is not None:
                node = nodes.verify_credential(node, request.credential)
            elif node is None:
                raise NotFound(f"node {request.node_id} no longer exists; join again")
        except CortexError as err:
            results[i] = err
            continue
        claim = presence.claim_stream(
            session,
            request.node_id,
            hub_id=hub_id,
            stream_id=request.stream_id,
            peer=request.peer,
            heartbeat_interval_s=heartbeat_interval_s,
        )
        results[i] = OpenedStream(
            node_name=node.name,
            policy=effective_policy(node, defaults),
            claim=claim,
            work_in_flight=request.node_id in busy,
        )
    return [r for r in results if r is not None]
