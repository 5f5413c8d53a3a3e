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


def split_token(prefix: str, token: str) -> tuple[str, str] | None:
    """Return (id, secret) of a well-formed token of this kind, else None."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != prefix or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]
