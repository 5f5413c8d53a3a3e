"""The change counter: every write a running hub must act on bumps it in the same
transaction, and the hub polls it (one indexed row) to know when to look closer."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cortexctl.store.models import Counter

CHANGES = "changes"


def bump(session: Session) -> None:
    session.execute(update(Counter).where(Counter.name == CHANGES).values(value=Counter.value + 1))


def current(session: Session) -> int:
    return session.scalar(select(Counter.value).where(Counter.name == CHANGES)) or 0
