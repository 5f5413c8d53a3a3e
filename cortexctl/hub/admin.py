"""The admin API (``cortex.admin.v1.AdminService``): each method one core call.

``AdminAuthInterceptor`` is the one place that authenticates admin tokens and checks a
caller's role against ``core.roles.METHOD_ROLES``; typed errors become statuses in
``interceptors.ErrorMappingInterceptor``, as for the node API. The caller's identity
reaches a method through ``CALLER`` (a context variable set by the interceptor).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import grpc

from cortexctl.core import (
    admin_tokens,
    audit,
    hubs,
    invites,
    journal,
    maintenance,
    mirrors,
    nodes,
    operations,
    quotas,
)
from cortexctl.core import status as core_status
from cortexctl.core.admin_tokens import AdminTokenView
from cortexctl.core.clock import Deadline
from cortexctl.core.live_output import STDERR, STDOUT, past
from cortexctl.core.roles import ADMIN, allows, needed_role
from cortexctl.core.selectors import parse_selector
from cortexctl.core.views import SandboxChanged, to_jsonable
from cortexctl.errors import CortexError, PermissionDenied, Unauthenticated
from cortexctl.hub import admin_convert as ac
from cortexctl.hub.executor import rpc_deadline
from cortexctl.hub.interceptors import Behavior, Continuation, StreamBehavior, wrap_handler
from cortexctl.hub.metrics import AdminStats
from cortexctl.hub.ratelimit import peer_host
from cortexctl.hub.runtime import HubRuntime
from cortexctl.hub.scheduler import Job
from cortexctl.proto import admin_pb2 as apb
from cortexctl.proto import admin_pb2_grpc as apb_grpc

log = logging.getLogger("cortexctl.hub")
SERVICE_NAME = apb.DESCRIPTOR.services_by_name["AdminService"].full_name
METHOD_PREFIX = f"/{SERVICE_NAME}/"
CALL_CAP_S = 10.0  # store work of one admin call, at most
GC_CAP_S = 600.0  # a gc run, a node deletion or a mirror removal (files, batches)

CALLER: contextvars.ContextVar[audit.Actor] = contextvars.ContextVar("caller")


def _certificate_subject(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The common name of the caller's verified client certificate ("" without mTLS: the
    transport only reports a subject for a certificate the hub's --tls-client-ca signed)."""
    names = (context.auth_context() or {}).get("x509_common_name") or ()
    return next((name.decode(errors="replace") for name in names), "")


def _bearer(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip()
    return ""


class RefusalLog:
    """Which refused calls to audit: each (who, method, outcome) once a minute, so a client
    retrying a refused call (or guessing tokens) cannot flood the audit log; the metrics
    count every refusal."""

    def __init__(self, every_s: float = 60.0, max_keys: int = 10_000) -> None:
        self.every_s = every_s
        self.max_keys = max_keys
        self.last: dict[tuple[str, str, str], float] = {}

    def due(self, key: tuple[str, str, str]) -> bool:
        now = time.monotonic()
        if now - self.last.get(key, -self.every_s) < self.every_s:
            return False
        if len(self.last) >= self.max_keys:
            self.last.clear()
        self.last[key] = now
        return True


class AdminAuthInterceptor(grpc.aio.ServerInterceptor):
    """Admin token -> role -> allowed for this method, or UNAUTHENTICATED/PERMISSION_DENIED
    (audited); every call counted in ``stats`` (the hub's /metrics)."""

    def __init__(self, runtime: HubRuntime) -> None:
        self.rt = runtime
        self.stats = AdminStats()
        self.refusals = RefusalLog()
        self.touched: dict[str, float] = {}  # token id -> when this hub last wrote its use

    async def _authorize(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """An admin token, when the call carries one, else the verified client certificate's
        subject through ``hub.admin_cert_roles``; either gives the caller's role."""
        token = _bearer(context)
        peer = context.peer() or "unknown"
        subject = "" if token else _certificate_subject(context)
        needed = needed_role(method)
        deadline = rpc_deadline(context, CALL_CAP_S)
        try:
            if subject:
                actor, role, what = self._certificate_caller(subject, peer)
                caller = None
            else:
                caller = await self._token_caller(token, deadline)
                actor, role = token_actor(caller, peer), caller.role
                what = f"admin token {caller.name}"
        except Unauthenticated as err:
            refused = (
                cert_actor(subject, peer) if subject else admin_tokens.refused_actor(token, peer)
            )
            await self._refused(refused, method, "UNAUTHENTICATED", needed or ADMIN, "")
            raise Unauthenticated(f"{err}; {method} needs the {needed or ADMIN} role") from None
        if needed is None or not allows(role, needed):
            await self._refused(actor, method, "PERMISSION_DENIED", needed or ADMIN, role)
            raise PermissionDenied(
                f"{method} needs the {needed or 'admin'} role; {what} has {role}"
            )
        if caller is not None:
            await self._touch(caller, deadline)
        CALLER.set(actor)

    async def _token_caller(self, token: str, deadline: Deadline) -> AdminTokenView:
        if not token:
            raise Unauthenticated(
                "no admin token: send `authorization: Bearer <admin token>` (create one "
                "with `cortexctl admin-tokens create --role viewer|operator|admin`), or a "
                "client certificate the hub maps to a role (hub.admin_cert_roles)"
            )
        return await self.rt.executor.session(
            admin_tokens.authenticate_admin, token, deadline=deadline
        )

    def _certificate_caller(self, subject: str, peer: str) -> tuple[audit.Actor, str, str]:
        role = self.rt.options.admin_cert_roles.get(subject)
        if role is None:
            raise Unauthenticated(
                f"client certificate {subject!r} has no admin role: send an admin token, or "
                f'map it in the hub\'s config (hub.admin_cert_roles = ["{subject}=viewer"])'
            )
        return cert_actor(subject, peer), role, f"client certificate {subject!r}"

    async def _refused(
        self, actor: audit.Actor, method: str, code: str, needed: str, role: str
    ) -> None:
        self.stats.denied(method, code)
        if not self.refusals.due((f"{actor.name}@{peer_host(actor.source)}", method, code)):
            return
        try:
            await self.rt.executor.session(
                admin_tokens.record_refusal,
                actor,
                method,
                code,
                needed=needed,
                role=role,
                write=True,
                timeout=CALL_CAP_S,
            )
        except CortexError as err:  # the refusal stands; only its record is lost
            log.warning("could not audit a refused %s call: %s", method, err)

    async def _touch(self, caller: AdminTokenView, deadline: Deadline) -> None:
        """last_used_at, at most once a minute per token (not a write per call)."""
        now = time.monotonic()
        recent = now - self.touched.get(caller.id, -1e9) < admin_tokens.LAST_USED_EVERY_S
        if recent or not admin_tokens.last_used_due(caller):
            return
        self.touched[caller.id] = now
        try:
            await self.rt.executor.session(
                admin_tokens.touch_last_used, caller.id, write=True, deadline=deadline
            )
        except CortexError as err:
            log.warning("could not record the use of admin token %s: %s", caller.name, err)

    def _awaited(self, method: str, inner: Behavior) -> Behavior:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started, code = time.perf_counter(), "OK"
            try:
                await self._authorize(method, context)
                return await inner(request, context)
            except BaseException as err:
                code = _code_of(err)
                raise
            finally:
                self.stats.record(method, code, time.perf_counter() - started)

        return call

    def _streamed(self, method: str, inner: StreamBehavior) -> StreamBehavior:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started, code = time.perf_counter(), "OK"
            try:
                await self._authorize(method, context)
                async for item in inner(request, context):
                    yield item
            except BaseException as err:
                code = _code_of(err)
                raise
            finally:
                self.stats.record(method, code, time.perf_counter() - started)

        return call

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        full = handler_call_details.method
        if handler is None or not full.startswith(METHOD_PREFIX):
            return handler
        method = full[len(METHOD_PREFIX) :]
        return wrap_handler(
            handler,
            lambda inner: self._awaited(method, inner),
            lambda inner: self._streamed(method, inner),
        )


def _code_of(err: BaseException) -> str:
    if isinstance(err, CortexError):
        return err.grpc_status
    if isinstance(err, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return "INTERNAL"


def token_actor(token: AdminTokenView, peer: str) -> audit.Actor:
    return audit.Actor(name=token.name, kind="token", source=f"admin API from {peer}")


def cert_actor(subject: str, peer: str) -> audit.Actor:
    return audit.Actor(name=subject, kind="certificate", source=f"admin API from {peer}")


def caller_actor() -> audit.Actor:
    return CALLER.get()


class AdminService(apb_grpc.AdminServiceServicer):
    def __init__(self, runtime: HubRuntime) -> None:
        self.rt = runtime

    async def _session(
        self, context: grpc.aio.ServicerContext[Any, Any], fn: Any, *args: Any, **kw: Any
    ) -> Any:
        return await self.rt.executor.session(
            fn, *args, deadline=rpc_deadline(context, CALL_CAP_S), **kw
        )

    async def _run(
        self, context: Any, fn: Any, *args: Any, cap_s: float = CALL_CAP_S, **kw: Any
    ) -> Any:
        """``fn(*args, **kw)`` on the executor: core calls that open their own sessions."""
        deadline = rpc_deadline(context, cap_s)
        return await self.rt.executor.run(partial(fn, *args, **kw), deadline=deadline)

    def _changed(self) -> Any:
        """A node's policy, credential or state changed: the reconciler looks now."""
        self.rt.wake_reconciler.set()

    # invites

    async def CreateInvite(self, request: Any, context: Any) -> apb.CreateInviteResponse:
        created = await self._session(
            context,
            operations.create_invite,
            caller_actor(),
            ttl_s=request.ttl_ms / 1000,
            uses=request.uses or 1,
            labels=dict(request.labels),
            sandbox=request.sandbox.lower() or None,
            note=request.note,
            name=request.name or None,
            name_prefix=request.name_prefix or None,
            write=True,
        )
        return apb.CreateInviteResponse(invite=ac.invite_to_pb(created.invite), token=created.token)

    async def ListInvites(self, request: Any, context: Any) -> apb.ListInvitesResponse:
        views = await self._session(
            context, invites.list_invites, include_inactive=request.include_inactive
        )
        return apb.ListInvitesResponse(invites=[ac.invite_to_pb(v) for v in views])

    async def RevokeInvite(self, request: Any, context: Any) -> apb.Invite:
        view = await self._session(
            context, operations.revoke_invite, caller_actor(), request.id, write=True
        )
        return ac.invite_to_pb(view)

    # nodes

    async def ListNodes(self, request: Any, context: Any) -> apb.ListNodesResponse:
        wanted = parse_selector(request.selector) if request.selector else None
        views = await self._session(
            context,
            nodes.list_nodes,
            self.rt.options.sandbox,
            include_revoked=request.include_revoked,
        )
        if wanted is not None:
            views = [v for v in views if wanted.matches(v.labels)]
        return apb.ListNodesResponse(nodes=[ac.node_to_pb(v) for v in views])

    async def ShowNode(self, request: Any, context: Any) -> apb.Node:
        opts = self.rt.options
        view, usage = await self._session(
            context, quotas.show_node_detail, request.node, opts.sandbox, opts.quotas
        )
        return ac.node_to_pb(view, {**to_jsonable(view, legacy=False), "mirror": usage})

    # tasks

    async def SubmitTask(self, request: Any, context: Any) -> apb.SubmitTaskResponse:
        expire_s = request.expire_after_ms / 1000 if request.expire_after_ms else None
        if expire_s is None:
            expire_s = self.rt.options.task_expiry_s or None
        outcome = await self._session(
            context,
            operations.submit_tasks,
            caller_actor(),
            node=request.node or None,
            selector=parse_selector(request.selector) if request.selector else None,
            argv=list(request.argv),
            script=request.script,
            timeout_s=request.timeout_s,
            env=dict(request.env),
            cwd=request.cwd,
            defaults=self.rt.options.sandbox,
            expire_after_s=expire_s,
            request_id=request.request_id,
            write=True,
        )
        self.rt.wake_reconciler.set()  # dispatch now, not at the next poll
        return apb.SubmitTaskResponse(
            tasks=[ac.submitted_to_pb(s) for s in outcome.done.tasks],
            replayed=outcome.replayed,
            not_connected=list(outcome.done.not_connected),
        )

    async def ListTasks(self, request: Any, context: Any) -> apb.ListTasksResponse:
        views = await self._session(
            context,
            operations.list_tasks,
            node=request.node or None,
            selector=parse_selector(request.selector) if request.selector else None,
            states=[s.lower() for s in request.states],
            limit=request.limit or 50,
        )
        return apb.ListTasksResponse(tasks=[ac.task_to_pb(v) for v in views])

    async def ShowTask(self, request: Any, context: Any) -> apb.Task:
        return ac.task_to_pb(await self._session(context, journal.get_task, request.id))

    async def CancelTask(self, request: Any, context: Any) -> apb.Task:
        view = await self._session(
            context,
            operations.cancel_task,
            caller_actor(),
            request.id,
            request.reason or "cancelled by an operator",
            dry_run=request.dry_run,
            write=not request.dry_run,
        )
        return ac.task_to_pb(view)

    async def _changes(
        self, task_id: str, context: Any, until: Deadline | None
    ) -> AsyncIterator[apb.TaskUpdate]:
        """The task now, then its live output and each change of its state, until it ends
        or ``until``. Woken at once by this hub's record of a report or an output chunk, or
        by another hub's or the CLI's NOTIFY (``task_watch``); the hub's poll interval is
        only the safety net."""
        poll_s = self.rt.options.poll_interval_s
        live = self.rt.live_output
        watches = self.rt.task_watches
        watch = watches.add(task_id)
        try:
            # Read once watching, so nothing after the read is missed.
            seen = await self._session(context, journal.watch_task, task_id)
            if seen.task.id != task_id:  # a prefix: watch the task's own id, read again
                watches.remove(watch)
                watch = watches.add(seen.task.id)
                seen = await self._session(context, journal.watch_task, seen.task.id)
            view = seen.task
            sent = {STDOUT: seen.stdout_bytes, STDERR: seen.stderr_bytes}
            watch.take_chunks()  # the backlog below holds them
            shown = {}
            for stream in (STDOUT, STDERR):
                shown[stream], sent[stream] = past(sent[stream], *live.pending(view.id, stream))
            yield apb.TaskUpdate(
                task=ac.task_to_pb(view), stdout_chunk=shown[STDOUT], stderr_chunk=shown[STDERR]
            )
            while view.state not in journal.TERMINAL:
                remaining = poll_s if until is None else min(poll_s, until.remaining())
                if remaining <= 0:
                    return
                dirty = await watch.wait(remaining)
                chunks = watch.take_chunks()
                if chunks:
                    got = {STDOUT: bytearray(), STDERR: bytearray()}
                    for chunk in chunks:
                        new, sent[chunk.stream] = past(sent[chunk.stream], chunk.offset, chunk.data)
                        got[chunk.stream] += new
                    yield apb.TaskUpdate(
                        task=ac.task_to_pb(dataclasses.replace(view, stdout="", stderr="")),
                        stdout_chunk=bytes(got[STDOUT]),
                        stderr_chunk=bytes(got[STDERR]),
                    )
                if not dirty:
                    continue  # only output: the state is as it was
                seen = await self._session(context, journal.watch_task, view.id)
                stored = {STDOUT: seen.stdout_bytes, STDERR: seen.stderr_bytes}
                if seen.task.state in journal.TERMINAL:
                    yield apb.TaskUpdate(task=ac.task_to_pb(seen.task))  # the authoritative output
                    return
                grew = {s: stored[s] > sent[s] for s in stored}
                if seen.task.state != view.state or any(grew.values()):
                    # Output stored by another hub (or before a gap) shows up here.
                    out = seen.task.stdout.encode()[sent[STDOUT] :] if grew[STDOUT] else b""
                    err = seen.task.stderr.encode()[sent[STDERR] :] if grew[STDERR] else b""
                    sent = {s: max(sent[s], stored[s]) for s in sent}
                    yield apb.TaskUpdate(
                        task=ac.task_to_pb(dataclasses.replace(seen.task, stdout="", stderr="")),
                        stdout_chunk=out,
                        stderr_chunk=err,
                    )
                view = seen.task
        finally:
            watches.remove(watch)

    async def WaitTask(self, request: Any, context: Any) -> apb.WaitTaskResponse:
        # Until the timeout asked for, within the call's own deadline (a day at most).
        cap = request.timeout_ms / 1000 if request.timeout_ms else 86400.0
        until = Deadline.within(context.time_remaining(), cap)
        task: apb.Task | None = None
        async for update in self._changes(request.id, context, until):
            task = update.task
        assert task is not None
        if not task.terminal:  # the wait timed out: the task as it is now, with its output
            task = ac.task_to_pb(await self._session(context, journal.get_task, task.id))
        return apb.WaitTaskResponse(task=task, ended=task.terminal)

    async def WatchTask(self, request: Any, context: Any) -> AsyncIterator[apb.TaskUpdate]:
        async for update in self._changes(request.id, context, None):
            yield update

    # mesh

    async def MeshStatus(self, request: Any, context: Any) -> apb.MeshStatusResponse:
        snap = await self._session(
            context, core_status.snapshot, self.rt.options.sandbox, with_jobs=request.with_jobs
        )
        summary = snap.summary
        return apb.MeshStatusResponse(
            nodes=apb.NodeCounts(
                total=summary["node_count"],
                online=summary["online_count"],
                stale=summary["stale_count"],
                offline=summary["offline_count"],
                revoked=summary["revoked_count"],
            ),
            tasks_running=summary["running_tasks"],
            tasks_pending=summary["pending_tasks"],
            hubs=list(snap.hubs),
            hub_id=self.rt.hub_id,
            connected_streams=len(self.rt.streams),
            json=ac.view_json(snap),
        )

    async def WatchEvents(self, request: Any, context: Any) -> AsyncIterator[apb.MeshEvent]:
        defaults = self.rt.options.sandbox
        pause = max(0.05, request.interval_ms / 1000 or self.rt.options.poll_interval_s)
        first, cursor = await self._session(context, core_status.start_events, defaults)
        yield ac.event_to_pb(first)
        while True:
            await asyncio.sleep(pause)
            events, cursor = await self._session(
                context, core_status.events_since, cursor, defaults
            )
            for event in events:
                yield ac.event_to_pb(event)

    # nodes: changes

    async def SetSandbox(self, request: Any, context: Any) -> apb.SetSandboxResponse:
        changes = await self._session(
            context,
            operations.set_sandbox,
            caller_actor(),
            list(request.nodes),
            all_nodes=request.all,
            selector=parse_selector(request.selector) if request.selector else None,
            include_self_reported=request.include_self_reported,
            mode=request.mode.lower() or None,
            allowed_commands=list(request.allowed_commands)
            if request.set_allowed_commands
            else None,
            defaults=self.rt.options.sandbox,
            add_env=list(request.add_env),
            clear_env=request.clear_env,
            deny_network=ac.deny_network(request.network),
            limits=dict(request.limits),
            reset_limits=request.reset_limits,
            dry_run=request.dry_run,
            write=not request.dry_run,
        )
        self._changed()
        return apb.SetSandboxResponse(
            changes=[ac.sandbox_change_to_pb(c) for c in changes],
            json=ac.view_json([SandboxChanged.of(c) for c in changes]),
        )

    async def SetQuota(self, request: Any, context: Any) -> apb.QuotaUsage:
        usage = await self._session(
            context,
            operations.set_quota,
            caller_actor(),
            request.node,
            quota_bytes=request.quota_bytes if request.HasField("quota_bytes") else None,
            quota_files=request.quota_files if request.HasField("quota_files") else None,
            clear=request.clear,
            defaults=self.rt.options.quotas,
            write=True,
        )
        return ac.quota_to_pb(usage)

    async def RevokeNode(self, request: Any, context: Any) -> apb.RevokeNodeResponse:
        results = await self._session(
            context,
            operations.revoke_nodes,
            caller_actor(),
            list(request.nodes),
            selector=parse_selector(request.selector) if request.selector else None,
            include_self_reported=request.include_self_reported,
            dry_run=request.dry_run,
            write=not request.dry_run,
        )
        self._changed()
        return apb.RevokeNodeResponse(
            nodes=[ac.revoked_to_pb(r) for r in results], json=ac.view_json(results)
        )

    async def RotateCredential(self, request: Any, context: Any) -> apb.CredentialRotated:
        rotated = await self._session(
            context,
            operations.rotate_credential,
            caller_actor(),
            request.node,
            dry_run=request.dry_run,
            write=not request.dry_run,
        )
        self._changed()
        return apb.CredentialRotated(
            id=rotated.id,
            name=rotated.name,
            node_credential=rotated.node_credential,
            dry_run=rotated.dry_run,
        )

    async def RenameNode(self, request: Any, context: Any) -> apb.NodeRenamed:
        renamed = await self._session(
            context,
            operations.rename_node,
            caller_actor(),
            request.node,
            request.new_name,
            dry_run=request.dry_run,
            write=not request.dry_run,
        )
        return apb.NodeRenamed(
            id=renamed.id, old_name=renamed.old_name, name=renamed.name, dry_run=renamed.dry_run
        )

    async def DeleteNode(self, request: Any, context: Any) -> apb.NodeDeleted:
        deleted = await self._run(
            context,
            operations.delete_node,
            self.rt.executor.store,
            caller_actor(),
            request.node,
            self.rt.options.sandbox,
            mirrors_dir=self.rt.options.mirrors_dir,
            keep_mirror=request.keep_mirror,
            dry_run=request.dry_run,
            cap_s=GC_CAP_S,
        )
        return ac.deleted_to_pb(deleted)

    async def CordonNode(self, request: Any, context: Any) -> apb.NodeCordon:
        result = await self._session(
            context,
            operations.set_cordon,
            caller_actor(),
            request.node,
            request.cordoned,
            dry_run=request.dry_run,
            write=not request.dry_run,
        )
        self._changed()
        return ac.cordon_to_pb(result)

    async def DrainNode(self, request: Any, context: Any) -> apb.DrainNodeResponse:
        cordon = await self._session(
            context, operations.set_cordon, caller_actor(), request.node, True, write=True
        )
        self._changed()
        cap = request.timeout_ms / 1000 if request.timeout_ms else 86400.0
        until = Deadline.within(context.time_remaining(), cap)
        while (left := await self._session(context, nodes.in_flight_tasks, cordon.id)) and (
            not until.passed()
        ):
            await asyncio.sleep(nodes.DRAIN_POLL_S)
        return apb.DrainNodeResponse(
            node=ac.cordon_to_pb(cordon),
            drained=not left,
            running_tasks=left[:100],
            running_count=len(left),
        )

    # journal, gc

    async def FailNodeTasks(self, request: Any, context: Any) -> apb.JournalFailed:
        failed = await self._session(
            context,
            operations.fail_node_tasks,
            caller_actor(),
            request.node,
            request.reason or operations.JOURNAL_FAIL_REASON,
            dry_run=request.dry_run,
            write=not request.dry_run,
        )
        return apb.JournalFailed(
            node_id=failed.node_id,
            node_name=failed.node_name,
            failed_tasks=failed.failed_tasks,
            dry_run=failed.dry_run,
        )

    async def RunGc(self, request: Any, context: Any) -> apb.GcResponse:
        opts = self.rt.options
        result = await self._run(
            context,
            operations.run_gc,
            self.rt.executor.store,
            caller_actor(),
            request.kind.lower(),
            dry_run=request.dry_run,
            mirrors_dir=opts.mirrors_dir,
            lock_ttl_s=opts.lock_ttl_s,
            mirror_retention_s=opts.mirror_retention_s,
            invite_retention_s=opts.invite_retention_s,
            audit_retention_s=opts.audit_retention_s,
            older_than_s=request.older_than_ms / 1000
            if request.HasField("older_than_ms")
            else None,
            # What this hub holds, so its live uploads are never swept.
            held=self.rt.sync_locks.held(),
            hub_id=self.rt.hub_id,
            held_temp_paths=frozenset(held.temp_path for held in self.rt.sync_locks.holders()),
            local_hubs=self.rt.local_hubs,
            cap_s=GC_CAP_S,
        )
        return ac.gc_to_pb(request.kind.lower(), result)

    # mirrors (this hub's disk)

    async def ListMirrors(self, request: Any, context: Any) -> apb.MirrorListing:
        listing = await self._session(
            context, mirrors.list_mirror, self.rt.options.mirrors_dir, request.node
        )
        return ac.listing_to_pb(listing)

    async def RemoveMirrorFiles(self, request: Any, context: Any) -> apb.MirrorRemoval:
        removal = await self._run(
            context,
            operations.mirrors_rm,
            self.rt.executor.store,
            caller_actor(),
            mirrors_dir=self.rt.options.mirrors_dir,
            ref=request.node,
            paths=list(request.paths),
            dry_run=request.dry_run,
            local_hubs=self.rt.local_hubs,
            cap_s=GC_CAP_S,
        )
        return ac.removal_to_pb(removal)

    async def DownloadMirrorFile(
        self, request: Any, context: Any
    ) -> AsyncIterator[apb.MirrorChunk]:
        found = await self._session(
            context,
            operations.find_mirror_download,
            caller_actor(),
            mirrors_dir=self.rt.options.mirrors_dir,
            ref=request.node,
            path=request.path,
            write=True,
        )
        fd = await self._run(context, mirrors.open_mirror_file, found.location)
        try:
            offset, mtime = 0, ac.unix_ms(found.mtime)
            while True:
                data = await self._run(
                    context, mirrors.read_chunk, fd, offset, self.rt.options.max_chunk_bytes
                )
                if data or offset == 0:
                    yield apb.MirrorChunk(
                        data=data, offset=offset, size=found.size, mtime_unix_ms=mtime
                    )
                offset += len(data)
                if not data or offset >= found.size:
                    return
        finally:
            os.close(fd)

    # hubs, audit

    async def ListHubs(self, request: Any, context: Any) -> apb.ListHubsResponse:
        views = await self._session(
            context, hubs.list_hubs, include_stopped=request.include_stopped
        )
        return apb.ListHubsResponse(hubs=[ac.hub_to_pb(v) for v in views])

    async def ListAudit(self, request: Any, context: Any) -> apb.ListAuditResponse:
        since = (
            datetime.fromtimestamp(request.since_unix_ms / 1000, UTC)
            if request.since_unix_ms
            else None
        )
        views = await self._session(
            context,
            audit.list_audit,
            since=since,
            actor=request.actor or None,
            limit=request.limit or 200,
        )
        return apb.ListAuditResponse(entries=[ac.audit_to_pb(v) for v in views])

    # admin tokens

    async def CreateAdminToken(self, request: Any, context: Any) -> apb.CreateAdminTokenResponse:
        created = await self._session(
            context,
            admin_tokens.create_admin_token,
            caller_actor(),
            name=request.name,
            role=request.role,
            ttl_s=request.ttl_ms / 1000 if request.HasField("ttl_ms") else None,
            write=True,
        )
        return apb.CreateAdminTokenResponse(
            admin_token=ac.admin_token_to_pb(created.admin_token), token=created.token
        )

    async def ListAdminTokens(self, request: Any, context: Any) -> apb.ListAdminTokensResponse:
        views = await self._session(
            context, admin_tokens.list_admin_tokens, include_inactive=request.include_inactive
        )
        return apb.ListAdminTokensResponse(admin_tokens=[ac.admin_token_to_pb(v) for v in views])

    async def RevokeAdminToken(self, request: Any, context: Any) -> apb.AdminToken:
        revoked = await self._session(
            context, admin_tokens.revoke_admin_token, caller_actor(), request.ref, write=True
        )
        return ac.admin_token_to_pb(revoked)


def add_admin_service(runtime: HubRuntime, server: grpc.aio.Server) -> None:
    apb_grpc.add_AdminServiceServicer_to_server(  # type: ignore[no-untyped-call]
        AdminService(runtime), server
    )


def admin_jobs(runtime: HubRuntime) -> list[Job]:
    """Audit retention: the same run as `cortexctl gc audit`."""
    opts, executor = runtime.options, runtime.executor

    async def gc_audit() -> dict[str, Any]:
        run = partial(maintenance.run_gc_audit, executor.store, retention_s=opts.audit_retention_s)
        result = await executor.run(run, timeout=600.0, what="the audit GC")
        return {"removed": result["count"], "skipped": result["skipped"]}

    return [Job("audit_gc", opts.audit_gc_interval_s, gc_audit, run_at_start=True)]
