"""Node names: what characters a name may hold, and who holds one.

Names are the operator's: a name is never suffixed to make it unique, and a revoked node
keeps its name until it is deleted.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from cortexctl.errors import InvalidArgument
from cortexctl.store.models import Node

NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def clean_name(requested: str, fallback: str) -> str:
    name = NAME_UNSAFE.sub("-", requested or fallback or "node").strip("-.")[:63]
    return name or "node"


def check_name(name: str, what: str = "name") -> str:
    """An operator-given node name (or prefix): the characters a name may hold, 1-63."""
    if not name or len(name) > 63 or NAME_UNSAFE.search(name) or name[0] in "-.":
        raise InvalidArgument(
            f"bad {what} {name!r}: use 1-63 of A-Z a-z 0-9 . _ -, not starting with - or ."
        )
    return name


def name_taken(session: Session, name: str) -> Node | None:
    """The node holding ``name`` — revoked ones included: a name is free once its node is
    deleted, never before, so a revoked node's name cannot be taken over by a newcomer."""
    return session.scalar(select(Node).where(Node.name == name))
