"""Per-node mirror quotas, counted in the store so they hold across hubs.

Each node row carries what its mirror holds (``mirror_bytes``, ``mirror_files``) and its
own quota (NULL: the hub-wide default from config; 0: no limit). An upload is checked
against the quota when it starts (from its announced size) and charged once, when it is
complete and verified, by one conditional ``UPDATE`` — so two hubs racing to fill the
same node's last bytes cannot both win. Deletions (`gc mirrors`, `mirrors rm`) give the
bytes back. Nothing here runs per chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql import ColumnElement

from cortexctl.core import changes
from cortexctl.core.views import Usage as Usage
from cortexctl.errors import InvalidArgument, ResourceExhausted
from cortexctl.store.engine import affected
from cortexctl.store.models import Node
from cortexctl.units import format_size

if TYPE_CHECKING:
    from cortexctl.config import Settings
    from cortexctl.core.sandbox import SandboxDefaults
    from cortexctl.core.views import NodeView


@dataclass(frozen=True)
class QuotaDefaults:
    """Hub-wide quotas for nodes that have none of their own; 0 means no limit."""

    bytes: int = 0
    files: int = 0


def quota_defaults(settings: Settings) -> QuotaDefaults:
    """The hub-wide quotas the settings give (the hub and the CLI read the same)."""
    return QuotaDefaults(bytes=settings.sync.quota_bytes, files=settings.sync.quota_files)


def usage_of(
    node: Node,
    defaults: QuotaDefaults,
    quota: tuple[int | None, int | None] | None = None,
) -> Usage:
    """The node's usage and quota; ``quota`` (bytes, files) instead of the node's own."""
    quota_bytes, quota_files = quota or (node.quota_bytes, node.quota_files)
    return Usage(
        node_id=node.id,
        node_name=node.name,
        quota_bytes=defaults.bytes if quota_bytes is None else int(quota_bytes),
        quota_files=defaults.files if quota_files is None else int(quota_files),
        quota_configured=quota_bytes is not None or quota_files is not None,
        used_bytes=int(node.mirror_bytes or 0),
        used_files=int(node.mirror_files or 0),
    )


def read_usage(session: Session, node_id: str, defaults: QuotaDefaults) -> Usage | None:
    node = session.get(Node, node_id)
    return None if node is None else usage_of(node, defaults)


def over_quota(usage: Usage, add_bytes: int, add_files: int) -> str:
    """Why adding to ``usage`` breaks its quota ("" if it does not)."""
    if usage.quota_bytes and add_bytes > 0 and usage.used_bytes + add_bytes > usage.quota_bytes:
        return (
            f"node {usage.node_name} ({usage.node_id}) would exceed its mirror quota of "
            f"{format_size(usage.quota_bytes)} (bytes): it holds "
            f"{format_size(usage.used_bytes)} and this file adds {format_size(add_bytes)}; "
            "free room with `cortexctl mirrors rm` or raise it with `cortexctl nodes quota`"
        )
    if usage.quota_files and add_files > 0 and usage.used_files + add_files > usage.quota_files:
        return (
            f"node {usage.node_name} ({usage.node_id}) would exceed its mirror quota of "
            f"{usage.quota_files} files: it holds {usage.used_files}; free room with "
            "`cortexctl mirrors rm` or raise it with `cortexctl nodes quota`"
        )
    return ""


def check_quota(usage: Usage, add_bytes: int, add_files: int) -> None:
    """RESOURCE_EXHAUSTED naming the quota if ``add_*`` would not fit."""
    reason = over_quota(usage, add_bytes, add_files)
    if reason:
        raise ResourceExhausted(reason + "; nothing was written")


def charge(
    session: Session, node_id: str, add_bytes: int, add_files: int, defaults: QuotaDefaults
) -> None:
    """Count a committed file against the node's quota, or RESOURCE_EXHAUSTED.

    One conditional UPDATE: the row changes only if the result stays within the quota
    (a delta that shrinks usage always passes), so the check and the count are one step.
    """
    limit_bytes = func.coalesce(Node.quota_bytes, defaults.bytes)
    limit_files = func.coalesce(Node.quota_files, defaults.files)
    conditions = [Node.id == node_id]
    if add_bytes > 0:  # a file that shrinks the mirror always fits
        conditions.append(or_(limit_bytes == 0, Node.mirror_bytes + add_bytes <= limit_bytes))
    if add_files > 0:
        conditions.append(or_(limit_files == 0, Node.mirror_files + add_files <= limit_files))
    result = session.execute(
        update(Node)
        .where(and_(*conditions))
        .values(
            mirror_bytes=_clamped(Node.mirror_bytes, add_bytes),
            mirror_files=_clamped(Node.mirror_files, add_files),
        )
        .execution_options(synchronize_session=False)
    )
    if affected(result):
        return
    usage = read_usage(session, node_id, defaults)
    if usage is None:
        return  # the node row is gone (deleted); nothing to count against
    check_quota(usage, add_bytes, add_files)
    raise ResourceExhausted(  # the row changed between the two statements
        f"node {usage.node_name} ({usage.node_id}) is at its mirror quota; nothing was written"
    )


def _clamped(column: InstrumentedAttribute[int], delta: int) -> ColumnElement[int]:
    """``column + delta``, never below zero (a recount may have lowered it meanwhile)."""
    return case((column + delta < 0, 0), else_=column + delta)


def release(session: Session, node_id: str, bytes_: int, files: int) -> None:
    """Give back what deleted files held (never below zero)."""
    if not bytes_ and not files:
        return
    session.execute(
        update(Node)
        .where(Node.id == node_id)
        .values(
            mirror_bytes=_clamped(Node.mirror_bytes, -bytes_),
            mirror_files=_clamped(Node.mirror_files, -files),
        )
        .execution_options(synchronize_session=False)
    )


def reset_usage(session: Session, node_ids: Sequence[str]) -> None:
    """A node's whole mirror went: it holds nothing."""
    if node_ids:
        session.execute(
            update(Node)
            .where(Node.id.in_(list(node_ids)))
            .values(mirror_bytes=0, mirror_files=0)
            .execution_options(synchronize_session=False)
        )


def set_usage(session: Session, node_id: str, bytes_: int, files: int) -> None:
    """What a recount of the mirror found."""
    session.execute(
        update(Node)
        .where(Node.id == node_id)
        .values(mirror_bytes=bytes_, mirror_files=files)
        .execution_options(synchronize_session=False)
    )


def set_quota(
    session: Session,
    ref: str,
    *,
    quota_bytes: int | None,
    quota_files: int | None,
    clear: bool,
    defaults: QuotaDefaults,
    dry_run: bool = False,
) -> Usage:
    """Set a node's quota (0 = no limit), or with ``clear`` go back to the hub default;
    with ``dry_run`` only the usage as it would be, nothing changed."""
    from cortexctl.core.nodes import resolve_node

    if clear and (quota_bytes is not None or quota_files is not None):
        raise InvalidArgument("give --clear alone, or --bytes/--files (not both)")
    if not clear and quota_bytes is None and quota_files is None:
        raise InvalidArgument("give --bytes SIZE and/or --files N, or --clear for the hub default")
    node = resolve_node(session, ref)
    new_bytes: int | None = None
    new_files: int | None = None
    if not clear:
        # Setting one of the two fixes the other at the current hub default.
        new_bytes = quota_bytes if quota_bytes is not None else node.quota_bytes
        new_files = quota_files if quota_files is not None else node.quota_files
        new_bytes = defaults.bytes if new_bytes is None else new_bytes
        new_files = defaults.files if new_files is None else new_files
    if dry_run:
        return usage_of(node, defaults, (new_bytes, new_files))
    node.quota_bytes, node.quota_files = new_bytes, new_files
    changes.bump(session)
    session.flush()
    return usage_of(node, defaults)


def usage_by_node(
    session: Session, node_ids: Sequence[str], defaults: QuotaDefaults
) -> list[Usage]:
    rows = session.scalars(select(Node).where(Node.id.in_(list(node_ids)))).all()
    return [usage_of(node, defaults) for node in rows]


def show_node_detail(
    session: Session, ref: str, defaults: SandboxDefaults, quota_defaults: QuotaDefaults
) -> tuple[NodeView, Usage]:
    """`nodes show`: the node and its mirror's quota and usage, in one read."""
    from cortexctl.core.nodes import show_node

    view = show_node(session, ref, defaults)
    usage = read_usage(session, view.id, quota_defaults)
    assert usage is not None  # the node was just read in this transaction
    return view, usage
