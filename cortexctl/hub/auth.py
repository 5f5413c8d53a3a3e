"""Node authentication for TaskStream and SyncFile, with verified credentials cached.

Heartbeats and chunks of connected nodes must never wait on the database, so a credential
verified once is kept (by node id, as the hash the store holds) until the node is revoked
or the entry ages out; a failed verification is never cached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from cortexctl.core import nodes
from cortexctl.core.secrets import NODE_PREFIX, hash_secret, secret_matches, split_token
from cortexctl.errors import Unauthenticated
from cortexctl.hub.executor import StoreExecutor

CACHE_TTL_S = 300.0


@dataclass(frozen=True)
class NodeIdentity:
    node_id: str
    name: str


def bearer_credential(metadata: Any) -> str:
    """The credential from ``authorization: Bearer ...`` in gRPC invocation metadata."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, credential = text.partition(" ")
            if scheme.lower() == "bearer" and credential.strip():
                return credential.strip()
            break
    raise Unauthenticated(
        "missing credential: send metadata "
        "'authorization: Bearer <node_credential>' from the handshake"
    )


class CredentialCache:
    def __init__(self, executor: StoreExecutor, deadline_s: float) -> None:
        self._executor = executor
        self._deadline_s = deadline_s
        self._entries: dict[str, tuple[str, NodeIdentity, float]] = {}  # id -> (hash, who, t)

    def __len__(self) -> int:
        return len(self._entries)

    async def authenticate(self, credential: str, *, wait_s: float = 0.0) -> NodeIdentity:
        """The node behind ``credential``, from memory when verified recently; a store
        call otherwise, which waits its turn up to ``wait_s`` when the store queue is full
        (stream opens of a reconnect storm) instead of being refused."""
        parts = split_token(NODE_PREFIX, credential)
        if parts is None:
            raise Unauthenticated("malformed node credential; rejoin with a new invite")
        who = self.cached(credential)
        if who is not None:
            return who
        node = await self._executor.session(
            nodes.authenticate,
            credential,
            timeout=max(self._deadline_s, wait_s),
            wait_turn=wait_s > 0,
        )
        return self.remember(credential, NodeIdentity(node.id, node.name))

    def cached(self, credential: str) -> NodeIdentity | None:
        """The node behind ``credential`` if this hub verified it recently (no store call)."""
        parts = split_token(NODE_PREFIX, credential)
        if parts is None:
            return None
        cached = self._entries.get(parts[0])
        if (
            cached
            and time.monotonic() - cached[2] < CACHE_TTL_S
            and secret_matches(parts[1], cached[0])
        ):
            return cached[1]
        return None

    def remember(self, credential: str, who: NodeIdentity) -> NodeIdentity:
        """Keep a credential the store just verified as ``who``'s."""
        parts = split_token(NODE_PREFIX, credential)
        if parts is not None:
            self._entries[who.node_id] = (hash_secret(parts[1]), who, time.monotonic())
        return who

    def known(self, credential: str) -> bool:
        """Whether ``credential`` is one this hub verified recently (no store call)."""
        return self.cached(credential) is not None

    def forget(self, node_id: str) -> None:
        self._entries.pop(node_id, None)

    def node_ids(self) -> list[str]:
        return list(self._entries)

    def cached_hashes(self) -> dict[str, str]:
        return {node_id: entry[0] for node_id, entry in self._entries.items()}

    def sweep(self) -> int:
        """Drop aged entries (the safety net; revocation evicts at once)."""
        cutoff = time.monotonic() - CACHE_TTL_S
        stale = [node_id for node_id, entry in self._entries.items() if entry[2] < cutoff]
        for node_id in stale:
            del self._entries[node_id]
        return len(stale)
