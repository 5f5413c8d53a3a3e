"""Identifiers, bearer secrets and their hashes.

Tokens look like ``cortex-invite.<id>.<secret>`` and ``cortex-node.<id>.<secret>``: the id
finds the row through an index, the 256-bit secret is stored only as its SHA-256 and
compared in constant time. (A fast hash is right here: the secrets are random, not chosen
by people, so there is nothing to brute-force.)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import NamedTuple

INVITE_PREFIX = "cortex-invite"
NODE_PREFIX = "cortex-node"


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(6)}"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def make_token(prefix: str, ident: str, secret: str) -> str:
    return f"{prefix}.{ident}.{secret}"


class Minted(NamedTuple):
    token: str  # shown once, never stored
    secret_hash: str  # what the row keeps


def mint(prefix: str, ident: str) -> Minted:
    """A new bearer token for the row ``ident`` and the hash its row stores."""
    secret = new_secret()
    return Minted(make_token(prefix, ident, secret), hash_secret(secret))


def split_token(prefix: str, token: str) -> tuple[str, str] | None:
    """Return (id, secret) of a well-formed token of this kind, else None."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != prefix or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def token_state(
    revoked_at: datetime | None, expires_at: datetime | None, at: datetime, *, used_up: bool = False
) -> str:
    """The state of a stored bearer token at ``at``: revoked, used (``used_up``), expired
    (``expires_at`` None: never) or active, the first that holds."""
    if revoked_at is not None:
        return "revoked"
    if used_up:
        return "used"
    if expires_at is not None and expires_at <= at:
        return "expired"
    return "active"
