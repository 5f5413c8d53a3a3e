"""Operator changes as one audited core call each: what the local CLI and the admin API
both run, so a change made either way is recorded the same way (``core.audit``)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cortexctl.config import Settings
from cortexctl.core import (
    audit,
    clock,
    invites,
    journal,
    maintenance,
    mirrors,
    node_removal,
    nodes,
    quotas,
    submission,
)
from cortexctl.core.audit import Actor
from cortexctl.core.sandbox import SandboxDefaults
from cortexctl.core.selectors import Selector
from cortexctl.core.views import CredentialRotated, JournalFailed
from cortexctl.errors import Conflict, InvalidArgument
from cortexctl.store.engine import Store
from cortexctl.store.models import SubmitRequest

MAX_REQUEST_ID = 128
REQUEST_ID_TTL_S = submission.REQUEST_ID_TTL_S
gc_submit_requests = submission.gc_submit_requests


def create_invite(
    session: Session,
    actor: Actor,
    *,
    ttl_s: float,
    uses: int = 1,
    labels: dict[str, str] | None = None,
    sandbox: str | None = None,
    note: str = "",
    name: str | None = None,
    name_prefix: str | None = None,
) -> invites.CreatedInvite:
    created = invites.create_invite(
        session,
        ttl_s=ttl_s,
        uses=uses,
        labels=labels,
        sandbox=sandbox,
        note=note,
        name=name,
        name_prefix=name_prefix,
    )
    audit.record(
        session,
        actor,
        "invites.create",
        created.invite.id,
        detail={"uses": uses, "ttl_s": ttl_s, "labels": dict(labels or {}), "sandbox": sandbox},
    )
    return created


def revoke_invite(
    session: Session, actor: Actor, invite_id: str, *, dry_run: bool = False
) -> invites.InviteView:
    revoked = invites.revoke_invite(session, invite_id, dry_run=dry_run)
    if not dry_run:
        audit.record(session, actor, "invites.revoke", revoked.id)
    return revoked


@dataclass(frozen=True)
class SubmitOutcome:
    done: submission.Submission
    replayed: bool  # the request id was seen before: these are the tasks it made then


def check_request_id(request_id: str) -> str:
    request_id = request_id.strip()
    if len(request_id) > MAX_REQUEST_ID or any(ch.isspace() for ch in request_id):
        raise InvalidArgument(
            f"bad request id {request_id[:40]!r}: at most {MAX_REQUEST_ID} characters, no spaces"
        )
    return request_id


def _replay(session: Session, request_id: str, selector: Selector | None) -> SubmitOutcome | None:
    seen = session.get(SubmitRequest, request_id)
    if seen is None:
        return None
    tasks = []
    for task_id in seen.task_ids:
        view = journal.get_task(session, task_id)
        tasks.append(
            journal.Submitted(view.id, view.state, view.node_id, view.node_name, view.error)
        )
    return SubmitOutcome(submission.Submission(tasks, selector, ()), replayed=True)


def submit_tasks(
    session: Session,
    actor: Actor,
    *,
    node: str | None = None,
    selector: Selector | None = None,
    argv: Sequence[str] = (),
    script: str = "",
    timeout_s: float = 0,
    env: Mapping[str, str] | None = None,
    cwd: str = "",
    defaults: SandboxDefaults,
    expire_after_s: float | None = None,
    request_id: str = "",
) -> SubmitOutcome:
    """``core.submission.submit``, audited, with an optional client ``request_id``: a retry
    of the same request (after a lost answer, say) returns the tasks the first one made and
    makes none."""
    submission.check_target(node, selector)
    request_id = check_request_id(request_id) if request_id else ""
    if request_id and (earlier := _replay(session, request_id, selector)) is not None:
        return earlier
    done = submission.submit(
        session,
        node=node,
        selector=selector,
        argv=argv,
        script=script,
        timeout_s=timeout_s,
        env=env,
        cwd=cwd,
        defaults=defaults,
        expire_after_s=expire_after_s,
    )
    if request_id:
        try:
            with session.begin_nested():
                session.add(
                    SubmitRequest(
                        request_id=request_id,
                        task_ids=[t.id for t in done.created],
                        created_at=clock.now(),
                    )
                )
        except IntegrityError:
            # The same request raced in at the same moment and won: this one makes nothing.
            raise Conflict(
                f"request {request_id} is being submitted by another call; retry to get its tasks"
            ) from None
    for item in done.created:
        audit.record(
            session,
            actor,
            "tasks.submit",
            item.id,
            detail={
                "node": item.node_name,
                "argv": list(argv)[:16],
                "script": bool(script),
                "env_keys": sorted(env or {}),  # values may be secrets: keys only
                "state": item.state,
                **({"request_id": request_id} if request_id else {}),
            },
        )
    return SubmitOutcome(done, replayed=False)


def cancel_task(
    session: Session,
    actor: Actor,
    task_id: str,
    reason: str = "cancelled by an operator",
    *,
    dry_run: bool = False,
) -> journal.TaskView:
    view = journal.cancel_task(session, task_id, reason, dry_run=dry_run)
    if not dry_run:
        audit.record(session, actor, "tasks.cancel", view.id, detail={"reason": reason[:200]})
    return view


def list_tasks(
    session: Session,
    *,
    node: str | None = None,
    selector: Selector | None = None,
    states: Sequence[str] = (),
    limit: int = 50,
) -> list[journal.TaskView]:
    """`tasks list`: newest first, of one node, of a selector's nodes, or of all."""
    states = [s.lower() for s in states]
    for name in states:
        if name not in journal.STATES:
            raise InvalidArgument(
                f"bad --state {name!r}: expected one of {', '.join(journal.STATES)}"
            )
    if limit < 1:
        raise InvalidArgument("bad --limit: give at least 1")
    node_id = nodes.resolve_node(session, node).id if node else None
    node_ids = [n.id for n in nodes.select_nodes(session, selector)] if selector else None
    return journal.list_tasks(
        session, node_id=node_id, node_ids=node_ids, states=states, limit=limit
    )


# --- node changes, journal fail, mirrors, gc: audited, for the CLI and the admin API alike --


def set_sandbox(
    session: Session, actor: Actor, refs: Sequence[str], **change: Any
) -> list[nodes.PolicyChange]:
    """``nodes.set_sandbox``, one audit entry per node changed (none on a dry run)."""
    targets = (bool(refs), bool(change.get("all_nodes")), change.get("selector") is not None)
    if sum(targets) != 1:
        raise InvalidArgument("name the nodes to change, or give --all or -l SELECTOR (only one)")
    changed = nodes.set_sandbox(session, refs, **change)
    if not change.get("dry_run"):
        for item in changed:
            audit.record(
                session,
                actor,
                "nodes.sandbox",
                item.node_id,
                detail={
                    "name": item.name,
                    "sandbox": item.sandbox,
                    "allowed_commands": list(item.allowed_commands)[:32],
                    "network": item.network,
                    "revision": item.revision,
                },
            )
    return changed


def set_quota(
    session: Session,
    actor: Actor,
    ref: str,
    *,
    quota_bytes: int | None,
    quota_files: int | None,
    clear: bool,
    defaults: quotas.QuotaDefaults,
    dry_run: bool = False,
) -> quotas.Usage:
    usage = quotas.set_quota(
        session,
        ref,
        quota_bytes=quota_bytes,
        quota_files=quota_files,
        clear=clear,
        defaults=defaults,
        dry_run=dry_run,
    )
    if dry_run:
        return usage
    audit.record(
        session,
        actor,
        "nodes.quota",
        usage.node_id,
        detail={
            "name": usage.node_name,
            "quota_bytes": usage.quota_bytes,
            "quota_files": usage.quota_files,
            "cleared": clear,
        },
    )
    return usage


def revoke_nodes(
    session: Session,
    actor: Actor,
    refs: Sequence[str],
    *,
    selector: Selector | None = None,
    include_self_reported: bool = False,
    dry_run: bool = False,
) -> list[nodes.NodeRevoked]:
    results = nodes.revoke_nodes(
        session,
        refs,
        selector=selector,
        include_self_reported=include_self_reported,
        dry_run=dry_run,
    )
    if not dry_run:
        for item in results:
            audit.record(
                session,
                actor,
                "nodes.revoke",
                item.id,
                detail={"name": item.name, "failed_tasks": item.failed_tasks},
            )
    return results


def rotate_credential(
    session: Session, actor: Actor, ref: str, *, dry_run: bool = False
) -> CredentialRotated:
    """A new credential (shown once, in the result; never in the audit entry)."""
    if dry_run:
        target = nodes.resolve_node(session, ref)
        return CredentialRotated(id=target.id, name=target.name, node_credential="", dry_run=True)
    rotated = nodes.rotate_credential(session, ref)
    audit.record(
        session,
        actor,
        "nodes.rotate_credential",
        rotated.node.id,
        detail={"name": rotated.node.name},
    )
    return CredentialRotated(
        id=rotated.node.id, name=rotated.node.name, node_credential=rotated.credential
    )


def rename_node(
    session: Session, actor: Actor, ref: str, new_name: str, *, dry_run: bool = False
) -> nodes.NodeRenamed:
    target = nodes.resolve_node(session, ref)
    old = target.name
    renamed = nodes.rename_node(session, target.id, new_name, dry_run=dry_run)
    result = nodes.NodeRenamed(renamed.id, old, new_name.strip(), dry_run)
    if not dry_run and old != result.name:
        audit.record(
            session, actor, "nodes.rename", result.id, detail={"from": old, "to": result.name}
        )
    return result


def set_cordon(
    session: Session, actor: Actor, ref: str, cordoned: bool, *, dry_run: bool = False
) -> nodes.NodeCordon:
    target = nodes.set_cordon(session, ref, cordoned, dry_run=dry_run)
    if not dry_run:
        action = "nodes.cordon" if cordoned else "nodes.uncordon"
        audit.record(session, actor, action, target.id, detail={"name": target.name})
    return nodes.NodeCordon(target.id, target.name, cordoned, dry_run)


JOURNAL_FAIL_REASON = "failed by an operator (journal fail)"


def fail_node_tasks(
    session: Session, actor: Actor, ref: str, reason: str, *, dry_run: bool = False
) -> JournalFailed:
    """`journal fail`: FAIL every unfinished task of a node."""
    target = nodes.resolve_node(session, ref)
    failed = journal.fail_node_tasks(
        session, target.id, f"{reason} (node {target.name} ({target.id}))", dry_run=dry_run
    )
    if not dry_run:
        audit.record(
            session,
            actor,
            "journal.fail",
            target.id,
            detail={"name": target.name, "failed_tasks": failed, "reason": reason[:200]},
        )
    return JournalFailed(
        node_id=target.id, node_name=target.name, failed_tasks=failed, dry_run=dry_run
    )


def _record_after(
    store: Store, actor: Actor, action: str, target: str, detail: Mapping[str, Any]
) -> None:
    """An entry for a change made in sessions of its own (files, batches)."""
    with store.session(write=True) as session:
        audit.record(session, actor, action, target, detail=detail)


def delete_node(
    store: Store,
    actor: Actor,
    ref: str,
    defaults: SandboxDefaults,
    *,
    mirrors_dir: Path,
    keep_mirror: bool = False,
    dry_run: bool = False,
    local_hubs: Collection[str] = frozenset(),
) -> node_removal.NodeDeleted:
    deleted = node_removal.delete_node(
        store,
        ref,
        defaults,
        mirrors_dir=mirrors_dir,
        keep_mirror=keep_mirror,
        dry_run=dry_run,
        local_hubs=local_hubs,
    )
    if not dry_run:
        _record_after(
            store,
            actor,
            "nodes.delete",
            deleted.id,
            {
                "name": deleted.name,
                "deleted_tasks": deleted.deleted_tasks,
                "mirror": deleted.mirror_state,
            },
        )
    return deleted


def mirrors_rm(
    store: Store,
    actor: Actor,
    *,
    mirrors_dir: Path,
    ref: str,
    paths: Sequence[str],
    dry_run: bool = False,
    local_hubs: Collection[str] = frozenset(),
) -> mirrors.MirrorRemoval:
    removal = maintenance.run_mirrors_rm(
        store,
        mirrors_dir=mirrors_dir,
        ref=ref,
        paths=paths,
        dry_run=dry_run,
        local_hubs=local_hubs,
    )
    if not dry_run:
        _record_after(
            store,
            actor,
            "mirrors.rm",
            removal.node_id,
            {
                "paths": list(paths)[:32],
                "files": removal.files_removed,
                "bytes": removal.bytes_removed,
            },
        )
    return removal


def find_mirror_download(
    session: Session, actor: Actor, *, mirrors_dir: Path, ref: str, path: str
) -> mirrors.MirrorFileRef:
    """A mirror file to send to a caller (its bytes leave the hub: audited)."""
    found = mirrors.find_mirror_file(session, mirrors_dir, ref, path)
    audit.record(
        session,
        actor,
        "mirrors.download",
        found.node_id,
        detail={"path": found.path, "bytes": found.size},
    )
    return found


GC_KINDS = ("locks", "mirrors", "invites", "tasks", "audit")


def gc_thresholds(settings: Settings) -> dict[str, Any]:
    """``run_gc``'s folder and thresholds from the settings (what the local CLI runs with;
    a hub runs with its own, the same settings read at its start)."""
    return {
        "mirrors_dir": settings.mirrors_dir,
        "lock_ttl_s": settings.sync.lock_ttl,
        "mirror_retention_s": settings.sync.mirror_retention,
        "invite_retention_s": settings.jobs.invite_retention,
        "audit_retention_s": settings.jobs.audit_retention,
    }


def run_gc(
    store: Store,
    actor: Actor,
    kind: str,
    *,
    dry_run: bool = False,
    mirrors_dir: Path,
    lock_ttl_s: float,
    mirror_retention_s: float,
    invite_retention_s: float,
    audit_retention_s: float,
    older_than_s: float | None = None,
    **hub_state: Any,
) -> dict[str, Any]:
    """One `cortexctl gc KIND` run (the maintenance function the hub's job runs too),
    audited unless a dry run or skipped. ``older_than_s`` overrides the kind's own
    threshold (gc tasks needs it); ``hub_state`` is what a hub knows that the store does
    not (the uploads it holds)."""
    if kind == "locks":
        result = maintenance.run_gc_locks(
            store,
            ttl_s=lock_ttl_s if older_than_s is None else older_than_s,
            mirrors_dir=mirrors_dir,
            dry_run=dry_run,
            **{k: v for k, v in hub_state.items() if k in ("held", "hub_id")},
        )
    elif kind == "mirrors":
        result = maintenance.run_gc_mirrors(
            store,
            mirrors_dir=mirrors_dir,
            retention_s=mirror_retention_s if older_than_s is None else older_than_s,
            dry_run=dry_run,
            **{k: v for k, v in hub_state.items() if k in ("held_temp_paths", "local_hubs")},
        )
    elif kind == "invites":
        result = maintenance.run_gc_invites(store, retention_s=invite_retention_s, dry_run=dry_run)
    elif kind == "audit":
        result = maintenance.run_gc_audit(store, retention_s=audit_retention_s, dry_run=dry_run)
    elif kind == "tasks":
        if older_than_s is None:
            raise InvalidArgument("gc tasks needs --older-than DURATION, e.g. 30d")
        result = maintenance.run_gc_tasks(store, older_than_s=older_than_s, dry_run=dry_run)
    else:
        raise InvalidArgument(f"bad gc kind {kind!r}: expected one of {', '.join(GC_KINDS)}")
    if not dry_run and not result.get("skipped"):
        _record_after(store, actor, f"gc.{kind}", "", {"count": _gc_count(kind, result)})
    return result


def _gc_count(kind: str, result: Mapping[str, Any]) -> int:
    if kind == "locks":
        return len(result["expired"])
    if kind == "mirrors":
        return int(result["removed_files"])
    return int(result["count"])
