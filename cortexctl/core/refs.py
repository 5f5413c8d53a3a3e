"""Short references: a unique prefix of an id stands for the id, as git and docker allow."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cortexctl.errors import InvalidArgument

# Shorter prefixes match too much to be worth a query (and read like typos).
MIN_PREFIX = 3
MAX_CANDIDATES = 50


class AmbiguousRef(InvalidArgument):
    """A prefix that matches more than one id; the message lists the candidates."""


def prefix_matches(session: Session, column: Any, id_prefix: str, ref: str) -> list[str]:
    """Ids in ``column`` starting with ``ref`` (with or without the ``nd_``-style prefix)."""
    wanted = ref if ref.startswith(id_prefix) else id_prefix + ref
    if len(wanted) - len(id_prefix) < MIN_PREFIX:
        return []
    query = (
        select(column)
        .where(column.startswith(wanted, autoescape=True))
        .order_by(column)
        .limit(MAX_CANDIDATES)
    )
    return list(session.scalars(query))


def unique_match(session: Session, column: Any, id_prefix: str, ref: str, what: str) -> str | None:
    """The one id in ``column`` that ``ref`` is a prefix of, or None; AmbiguousRef listing
    the candidates when it is the prefix of several (``what``: "task", "invite"...)."""
    matches = prefix_matches(session, column, id_prefix, ref)
    if len(matches) > 1:
        raise AmbiguousRef(
            f"{ref!r} matches {len(matches)} {what}s: {', '.join(matches[:10])}; "
            "give more of the id"
        )
    return matches[0] if matches else None
