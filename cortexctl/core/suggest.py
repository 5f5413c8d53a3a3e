"""Shell-completion suggestions from the store: what a person may type for a node or a task.

Each returns ``(value, description)`` pairs, the shape shells show; the CLI only passes
them on.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cortexctl.store.models import Node, Task


def node_refs(session: Session, prefix: str, limit: int) -> list[tuple[str, str]]:
    """Names of nodes not revoked that start with ``prefix`` (and ids, once one is typed)."""
    rows = session.execute(
        select(Node.name, Node.id)
        .where(Node.revoked_at.is_(None))
        .order_by(Node.name)
        .limit(limit * 5)
    ).all()
    names = [(name, f"node {node_id}") for name, node_id in rows if name.startswith(prefix)]
    ids = [(node_id, f"node {name}") for name, node_id in rows if node_id.startswith(prefix)]
    # Ids only once one is being typed: an empty word lists the names people use.
    return (names + (ids if prefix else []))[:limit]


def task_ids(session: Session, prefix: str, limit: int) -> list[tuple[str, str]]:
    """Task ids starting with ``prefix``, each with its state and node."""
    # A range scan of the primary key: cheap however long the journal is.
    rows = session.execute(
        select(Task.id, Task.state, Node.name)
        .join(Node, Node.id == Task.node_id)
        .where(Task.id >= prefix)
        .order_by(Task.id)
        .limit(limit)
    ).all()
    return [
        (task_id, f"{state} on {node_name}")
        for task_id, state, node_name in rows
        if task_id.startswith(prefix)
    ]
