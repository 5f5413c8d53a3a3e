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

    async def authenticate(self, credential: str) -> NodeIdentity:
        parts = split_token(NODE_PREFIX, credential)
        if parts is None:
            raise Unauthenticated("malformed node credential; rejoin with a new invite")
        node_id, secret = parts
        cached = self._entries.get(node_id)
        if (
            cached
            and time.monotonic() - cached[2] < CACHE_TTL_S
            and secret_matches(secret, cached[0])
        ):
            return cached[1]
        node = await self._executor.session(
            nodes.authenticate, credential, timeout=self._deadline_s
        )
        who = NodeIdentity(node.id, node.name)
        self._entries[node_id] = (hash_secret(secret), who, time.monotonic())
        return who

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
