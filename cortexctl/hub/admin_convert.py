"""Core views <-> admin API messages, in one place (the admin twin of ``convert``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf.message import Message

from cortexctl.core import clock, states
from cortexctl.core.admin_tokens import AdminTokenView
from cortexctl.core.audit import AuditView
from cortexctl.core.hubs import HubView
from cortexctl.core.mirrors import MirrorListing, MirrorRemoval
from cortexctl.core.node_removal import NodeDeleted
from cortexctl.core.nodes import NodeCordon, NodeRevoked, PolicyChange
from cortexctl.core.status import AuditRecorded, MeshEvent
from cortexctl.core.views import (
    InviteView,
    NodeView,
    Submitted,
    TaskView,
    Usage,
    gc_report,
    to_jsonable,
)
from cortexctl.errors import InvalidArgument
from cortexctl.proto import admin_pb2 as apb

M = TypeVar("M", bound=Message)


def unix_ms(at: datetime | None) -> int:
    """An optional instant on the admin API: 0 when there is none."""
    return 0 if at is None else clock.unix_ms(at)


def labels_to_pb(labels: Mapping[str, object]) -> dict[str, str]:
    return {str(key): str(value) for key, value in labels.items()}


def view_json(view: Any) -> str:
    """A core view as the CLI prints it with --json, in the current names only (the remote
    CLI reads it back and adds the old names itself, as its own settings say)."""
    return json.dumps(to_jsonable(view, legacy=False), separators=(",", ":"))


def invite_to_pb(v: InviteView) -> apb.Invite:
    return apb.Invite(
        id=v.id,
        created_unix_ms=unix_ms(v.created_at),
        expires_unix_ms=unix_ms(v.expires_at),
        uses_allowed=v.uses_allowed,
        uses_count=v.uses_count,
        revoked=v.revoked,
        labels=labels_to_pb(v.labels),
        sandbox=v.sandbox or "",
        state=v.state,
        note=v.note,
        name=v.name or "",
        name_prefix=v.name_prefix or "",
        json=view_json(v),
    )


def node_to_pb(v: NodeView, shown: Any = None) -> apb.Node:
    """``shown``: what `nodes show --json` prints, when it is more than the view."""
    return apb.Node(
        id=v.id,
        name=v.name,
        hostname=v.hostname,
        online=v.online,
        status=v.status,
        sandbox=v.sandbox,
        sandbox_configured=v.sandbox_configured,
        allowed_commands=list(v.allowed_commands),
        policy_revision=v.policy_revision,
        policy_acked=v.policy_acked,
        labels=labels_to_pb(v.labels),
        agent_version=v.agent_version,
        hub_id=v.hub_id or "",
        last_heartbeat_unix_ms=unix_ms(v.last_heartbeat),
        created_unix_ms=unix_ms(v.created_at),
        revoked=v.revoked,
        running_tasks=v.running_tasks,
        cordoned=v.cordoned,
        json=view_json(v if shown is None else shown),
    )


def task_to_pb(v: TaskView) -> apb.Task:
    return apb.Task(
        id=v.id,
        node_id=v.node_id,
        node_name=v.node_name,
        state=v.state,
        argv=list(v.argv),
        script=v.script,
        cwd=v.cwd,
        timeout_s=v.timeout_s,
        has_exit_code=v.exit_code is not None,
        exit_code=v.exit_code or 0,
        stdout=v.stdout.encode(),
        stderr=v.stderr.encode(),
        output_truncated=v.output_truncated,
        error=v.error,
        created_unix_ms=unix_ms(v.created_at),
        dispatched_unix_ms=unix_ms(v.dispatched_at),
        started_unix_ms=unix_ms(v.started_at),
        finished_unix_ms=unix_ms(v.finished_at),
        hub_id=v.hub_id or "",
        expires_unix_ms=unix_ms(v.expires_at),
        terminal=v.state in states.TERMINAL,
        json=view_json(v),
    )


def submitted_to_pb(s: Submitted) -> apb.SubmittedTask:
    return apb.SubmittedTask(
        id=s.id, state=s.state, node_id=s.node_id, node_name=s.node_name, error=s.error
    )


NETWORK = {"": None, "allow": False, "deny": True}  # SetSandboxRequest.network -> deny_network


def deny_network(network: str) -> bool | None:
    try:
        return NETWORK[network.lower()]
    except KeyError:
        raise InvalidArgument(f"bad network {network!r}: expected allow or deny") from None


def sandbox_change_to_pb(c: PolicyChange) -> apb.SandboxChange:
    return apb.SandboxChange(
        node_id=c.node_id,
        name=c.name,
        sandbox=c.sandbox,
        allowed_commands=list(c.allowed_commands),
        allowed_prefixes=list(c.allowed_prefixes),
        allowed_env=list(c.allowed_env),
        network=c.network,
        revision=c.revision,
        limits={str(k): int(v) for k, v in c.limits.items()},
    )


def copied_to_pb(message: type[M], view: Any, **given: Any) -> M:
    """``message`` with every field the view has under the same name, plus ``given``: for
    views whose fields are the message's as they are (no instants, no maps to convert)."""
    names = [f.name for f in message.DESCRIPTOR.fields if f.name not in given]
    return message(**{n: getattr(view, n) for n in names if hasattr(view, n)}, **given)


def quota_to_pb(u: Usage) -> apb.QuotaUsage:
    return copied_to_pb(apb.QuotaUsage, u, json=view_json(u))


def revoked_to_pb(r: NodeRevoked) -> apb.RevokedNode:
    return copied_to_pb(apb.RevokedNode, r)


def deleted_to_pb(d: NodeDeleted) -> apb.NodeDeleted:
    return copied_to_pb(apb.NodeDeleted, d, json=view_json(d))


def cordon_to_pb(c: NodeCordon) -> apb.NodeCordon:
    return copied_to_pb(apb.NodeCordon, c)


def gc_to_pb(kind: str, result: dict[str, Any]) -> apb.GcResponse:
    report = gc_report(kind, result)
    return apb.GcResponse(
        kind=kind,
        dry_run=report.dry_run,
        skipped=report.skipped,
        count=report.count,
        files_removed=report.files_removed,
        bytes_removed=report.bytes_removed,
        json=view_json(report),
        result_json=view_json(result),
    )


def listing_to_pb(listing: MirrorListing) -> apb.MirrorListing:
    return apb.MirrorListing(
        node_id=listing.node_id,
        node_name=listing.node_name,
        files=[
            apb.MirrorFile(
                path=f.path,
                size=f.size,
                mtime_unix_ms=unix_ms(f.mtime),
                sha256=f.sha256,
                hub_id=f.hub_id,
                hub_state=f.hub_state,
            )
            for f in listing.files
        ],
        total_bytes=listing.total_bytes,
        json=view_json(listing),
    )


def removal_to_pb(r: MirrorRemoval) -> apb.MirrorRemoval:
    return apb.MirrorRemoval(
        node_id=r.node_id,
        node_name=r.node_name,
        items=[
            apb.RemovedPath(
                path=i.path, files_removed=i.files_removed, bytes_removed=i.bytes_removed
            )
            for i in r.items
        ],
        files_removed=r.files_removed,
        bytes_removed=r.bytes_removed,
        dry_run=r.dry_run,
        json=view_json(r),
    )


def hub_to_pb(v: HubView) -> apb.HubInfo:
    return apb.HubInfo(
        id=v.id,
        address=v.address,
        hostname=v.hostname,
        pid=v.pid,
        version=v.version,
        epoch=v.epoch,
        state=v.state,
        started_unix_ms=unix_ms(v.started_at),
        lease_expires_unix_ms=unix_ms(v.lease_expires_at),
        lease_remaining_s=v.lease_remaining_s,
        nodes_connected=v.nodes_connected,
        stopped_unix_ms=unix_ms(v.stopped_at),
        recovered_by_hub_id=v.recovered_by_hub_id or "",
        json=view_json(v),
    )


def audit_to_pb(v: AuditView) -> apb.AuditEntry:
    return apb.AuditEntry(
        seq=v.seq,
        at_unix_ms=unix_ms(v.at),
        actor=v.actor,
        actor_kind=v.actor_kind,
        source=v.source,
        action=v.action,
        target=v.target,
        outcome=v.outcome,
        detail_json=json.dumps(to_jsonable(v.detail)),
        json=view_json(v),
    )


def admin_token_to_pb(v: AdminTokenView) -> apb.AdminToken:
    return apb.AdminToken(
        id=v.id,
        name=v.name,
        role=v.role,
        created_unix_ms=unix_ms(v.created_at),
        expires_unix_ms=unix_ms(v.expires_at),
        revoked=v.revoked,
        last_used_unix_ms=unix_ms(v.last_used_at),
        created_by=v.created_by,
        state=v.state,
        json=view_json(v),
    )


def event_to_pb(event: MeshEvent) -> apb.MeshEvent:
    message = apb.MeshEvent(event=event.event, ts_unix_ms=unix_ms(event.ts), json=view_json(event))
    for name in ("node_id", "name", "status", "previous", "task_id", "state"):
        value = getattr(event, name, None)
        if isinstance(value, str):
            setattr(message, name, value)
    if isinstance(event, AuditRecorded):
        message.audit.CopyFrom(
            apb.AuditEntry(
                seq=event.seq,
                at_unix_ms=unix_ms(event.ts),
                actor=event.actor,
                actor_kind=event.actor_kind,
                source=event.source,
                action=event.action,
                target=event.target,
                outcome=event.outcome,
            )
        )
    return message
