"""A command's work through a remote context: the hub's admin API, answered as core views.

Every command renders one way (cli/render.py over core views): locally the views come from
core over the store; here from the admin API's answers, whose ``json`` fields carry the
same views as the hub's core made them (``views.from_jsonable``). So the table and the JSON
a remote command prints cannot drift from the local ones. This path loads grpc and the
generated messages, never the store (SQLAlchemy).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from cortexctl.core import views
from cortexctl.errors import (
    CortexError,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

if TYPE_CHECKING:
    from cortexctl.client import Hub
    from cortexctl.contexts import Context

CALL_TIMEOUT_S = 30.0
LONG_CALL_TIMEOUT_S = 630.0  # gc, node deletion, mirror removal: the hub's 600 s cap, and more
WAIT_SLICE_S = 600.0  # one WaitTask call waits at most this long; the CLI asks again
V = TypeVar("V")


class Remote:
    """One context's hub: its admin API, the calls the CLI makes, and their errors in words."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self._hub: Hub | None = None

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            from cortexctl.client import Hub

            ctx = self.context
            try:
                self._hub = Hub.connect(
                    ctx.hub,
                    token=ctx.token,
                    ca_cert=ctx.ca_cert,
                    insecure=ctx.insecure,
                    cert=ctx.cert,
                    key=ctx.key,
                )
            except OSError as err:
                raise InvalidArgument(
                    f"context {ctx.name!r}: cannot read {err.filename}: {err.strerror}; fix it "
                    f"with `cortexctl context add {ctx.name} ...`"
                ) from None
        return self._hub

    def close(self) -> None:
        if self._hub is not None:
            self._hub.close()
            self._hub = None

    def call(self, method: str, request: Any, *, timeout: float | None = CALL_TIMEOUT_S) -> Any:
        try:
            return self.hub._call(method, request, timeout=timeout)
        except CortexError as err:
            raise self.explain(err) from None

    def stream(self, method: str, request: Any) -> Any:
        try:
            yield from self.hub._stream(method, request)
        except CortexError as err:
            raise self.explain(err) from None

    def explain(self, err: CortexError) -> CortexError:
        """The hub's error with what to do about it (the others pass as the hub said them,
        the same words as the local command's)."""
        ctx = self.context
        where = f"context {ctx.name!r}, hub {ctx.hub}"
        text = str(err)
        if isinstance(err, Unauthenticated):
            return Unauthenticated(
                f"{text} ({where}); give the context a valid admin token: `cortexctl "
                f"context add {ctx.name} --hub {ctx.hub} --token-file FILE ...`"
            )
        if isinstance(err, PermissionDenied):
            return PermissionDenied(f"{text} ({where}); ask for a token with that role")
        if isinstance(err, Unavailable) and "Deadline" not in text:
            hint = self._tls_hint(text)
            if hint is not None:
                return InvalidArgument(f"{hint} ({where})")
            return Unavailable(
                f"hub {ctx.hub} of context {ctx.name!r} cannot be reached: {text}; is "
                "`cortexctl serve` running there? (`cortexctl context show`)"
            )
        return err

    def _tls_hint(self, details: str) -> str | None:
        from cortexctl import tlshints

        hint = tlshints.tls_failure(self.context, self.context.hub, "UNAVAILABLE", details)
        if hint is None and tlshints.closed_by_peer(details):
            spoken = tlshints.probe_tls(self.context.hub)
            hint = tlshints.closed_hint(self.context, self.context.hub, spoken)
        return hint

    # --- the calls, as views -------------------------------------------------------------

    def invites_create(self, **fields: Any) -> views.InviteCreated:
        from cortexctl.proto import admin_pb2 as apb

        response = self.call("CreateInvite", apb.CreateInviteRequest(**fields))
        invite = _view(views.InviteView, response.invite.json)
        return views.InviteCreated(
            id=invite.id,
            token=response.token,
            expires_at=invite.expires_at,
            uses_allowed=invite.uses_allowed,
            sandbox=invite.sandbox,
            labels=invite.labels,
            name=invite.name,
            name_prefix=invite.name_prefix,
        )

    def invites_list(self, include_inactive: bool) -> list[views.InviteView]:
        from cortexctl.proto import admin_pb2 as apb

        response = self.call(
            "ListInvites", apb.ListInvitesRequest(include_inactive=include_inactive)
        )
        return [_view(views.InviteView, item.json) for item in response.invites]

    def invites_revoke(self, invite_id: str) -> views.InviteView:
        from cortexctl.proto import admin_pb2 as apb

        return _view(
            views.InviteView, self.call("RevokeInvite", apb.RevokeInviteRequest(id=invite_id)).json
        )

    def nodes_list(self, include_revoked: bool) -> list[views.NodeView]:
        from cortexctl.proto import admin_pb2 as apb

        response = self.call("ListNodes", apb.ListNodesRequest(include_revoked=include_revoked))
        return [_view(views.NodeView, item.json) for item in response.nodes]

    def nodes_show(self, ref: str) -> tuple[views.NodeView, views.Usage]:
        from cortexctl.proto import admin_pb2 as apb

        shown = json.loads(self.call("ShowNode", apb.ShowNodeRequest(node=ref)).json)
        usage = views.from_jsonable(views.Usage, shown.pop("mirror"))
        return views.from_jsonable(views.NodeView, shown), usage

    def tasks_submit(self, wanted: Any, **fields: Any) -> tuple[views.Submission, bool]:
        """The submission, and whether the hub had seen its request id before."""
        from cortexctl.proto import admin_pb2 as apb

        response = self.call("SubmitTask", apb.SubmitTaskRequest(**fields))
        tasks = [
            views.Submitted(
                id=item.id,
                state=item.state,
                node_id=item.node_id,
                node_name=item.node_name,
                error=item.error,
            )
            for item in response.tasks
        ]
        return views.Submission(tasks, wanted, tuple(response.not_connected)), response.replayed

    def tasks_list(self, **fields: Any) -> list[views.TaskView]:
        from cortexctl.proto import admin_pb2 as apb

        response = self.call("ListTasks", apb.ListTasksRequest(**fields))
        return [_view(views.TaskView, item.json) for item in response.tasks]

    def tasks_show(self, ref: str) -> views.TaskView:
        from cortexctl.proto import admin_pb2 as apb

        return _view(views.TaskView, self.call("ShowTask", apb.ShowTaskRequest(id=ref)).json)

    def tasks_cancel(self, ref: str, reason: str, dry_run: bool) -> views.TaskView:
        from cortexctl.proto import admin_pb2 as apb

        request = apb.CancelTaskRequest(id=ref, reason=reason, dry_run=dry_run)
        return _view(views.TaskView, self.call("CancelTask", request).json)

    def tasks_wait(
        self, task_ids: Sequence[str], timeout_s: float | None
    ) -> tuple[list[views.TaskView], list[str]]:
        """Wait for each task to end (WaitTask): (ended views, ids still running)."""
        from cortexctl.proto import admin_pb2 as apb

        until = None if timeout_s is None else time.monotonic() + timeout_s
        ended: list[views.TaskView] = []
        for index, task_id in enumerate(task_ids):
            while True:
                left = WAIT_SLICE_S if until is None else max(0.0, until - time.monotonic())
                slice_s = min(left, WAIT_SLICE_S)
                request = apb.WaitTaskRequest(id=task_id, timeout_ms=max(1, int(slice_s * 1000)))
                response = self.call("WaitTask", request, timeout=slice_s + CALL_TIMEOUT_S)
                if response.ended:
                    ended.append(_view(views.TaskView, response.task.json))
                    break
                if until is not None and time.monotonic() >= until:
                    return ended, list(task_ids[index:])
        return ended, []

    def tasks_watch(self, ref: str) -> Any:
        """The task now, then at each change until it ends (WatchTask), as TaskViews."""
        from cortexctl.client import _Output
        from cortexctl.proto import admin_pb2 as apb

        output = _Output()  # live output comes as chunks; the view holds all of it so far
        for update in self.stream("WatchTask", apb.WatchTaskRequest(id=ref)):
            output.update(update)
            yield dataclasses.replace(
                _view(views.TaskView, update.task.json),
                stdout=output.stdout.decode("utf-8", "replace"),
                stderr=output.stderr.decode("utf-8", "replace"),
            )

    def nodes_cordon(self, ref: str, cordoned: bool, dry_run: bool) -> views.NodeCordon:
        from cortexctl.proto import admin_pb2 as apb

        request = apb.CordonNodeRequest(node=ref, cordoned=cordoned, dry_run=dry_run)
        answer = self.call("CordonNode", request)
        return views.NodeCordon(answer.id, answer.name, answer.cordoned, answer.dry_run)

    def mesh_status(self, with_jobs: bool) -> views.MeshSnapshot:
        from cortexctl.proto import admin_pb2 as apb

        response = self.call("MeshStatus", apb.MeshStatusRequest(with_jobs=with_jobs))
        return _view(views.MeshSnapshot, response.json)

    def mesh_events(self, interval_s: float) -> Iterator[Any]:
        """The mesh event stream (WatchEvents), each event as `--watch-events` prints it."""
        from cortexctl.proto import admin_pb2 as apb

        request = apb.WatchEventsRequest(interval_ms=max(1, int(interval_s * 1000)))
        for event in self.stream("WatchEvents", request):
            yield _json(event.json)

    # nodes: changes

    def nodes_sandbox(self, **fields: Any) -> list[views.SandboxChanged]:
        from cortexctl.proto import admin_pb2 as apb

        response = self.call("SetSandbox", apb.SetSandboxRequest(**fields))
        return [views.from_jsonable(views.SandboxChanged, item) for item in _json(response.json)]

    def nodes_quota(self, **fields: Any) -> views.Usage:
        from cortexctl.proto import admin_pb2 as apb

        return _view(views.Usage, self.call("SetQuota", apb.SetQuotaRequest(**fields)).json)

    def nodes_revoke(self, **fields: Any) -> list[views.NodeRevoked]:
        from cortexctl.proto import admin_pb2 as apb

        response = self.call("RevokeNode", apb.RevokeNodeRequest(**fields))
        return [views.from_jsonable(views.NodeRevoked, item) for item in _json(response.json)]

    def nodes_rotate(self, ref: str, dry_run: bool) -> views.CredentialRotated:
        from cortexctl.proto import admin_pb2 as apb

        request = apb.RotateCredentialRequest(node=ref, dry_run=dry_run)
        answer = self.call("RotateCredential", request)
        return views.CredentialRotated(
            answer.id, answer.name, answer.node_credential, answer.dry_run
        )

    def nodes_rename(self, ref: str, new_name: str, dry_run: bool) -> views.NodeRenamed:
        from cortexctl.proto import admin_pb2 as apb

        request = apb.RenameNodeRequest(node=ref, new_name=new_name, dry_run=dry_run)
        answer = self.call("RenameNode", request)
        return views.NodeRenamed(answer.id, answer.old_name, answer.name, answer.dry_run)

    def nodes_delete(self, ref: str, keep_mirror: bool, dry_run: bool) -> views.NodeDeleted:
        from cortexctl.proto import admin_pb2 as apb

        request = apb.DeleteNodeRequest(node=ref, keep_mirror=keep_mirror, dry_run=dry_run)
        return _view(
            views.NodeDeleted, self.call("DeleteNode", request, timeout=LONG_CALL_TIMEOUT_S).json
        )

    def nodes_drain(
        self, ref: str, timeout_s: float | None
    ) -> tuple[views.NodeCordon, list[str], int]:
        """Cordon, then wait for the node's tasks to end (DrainNode): (the node, the first
        tasks still running, how many run) — none left once drained."""
        from cortexctl.proto import admin_pb2 as apb

        request = apb.DrainNodeRequest(
            node=ref, timeout_ms=0 if timeout_s is None else max(1, int(timeout_s * 1000))
        )
        call_timeout = None if timeout_s is None else timeout_s + CALL_TIMEOUT_S
        answer = self.call("DrainNode", request, timeout=call_timeout)
        while timeout_s is None and not answer.drained:  # the hub waits a day at most
            answer = self.call("DrainNode", request, timeout=None)
        node = answer.node
        left = [] if answer.drained else list(answer.running_tasks)
        count = 0 if answer.drained else max(answer.running_count, len(left))
        return views.NodeCordon(node.id, node.name, node.cordoned, node.dry_run), left, count

    # journal, gc

    def journal_fail(self, ref: str, reason: str, dry_run: bool) -> views.JournalFailed:
        from cortexctl.proto import admin_pb2 as apb

        request = apb.FailNodeTasksRequest(node=ref, reason=reason, dry_run=dry_run)
        answer = self.call("FailNodeTasks", request)
        return views.JournalFailed(
            answer.node_id, answer.node_name, answer.failed_tasks, answer.dry_run
        )

    def gc(self, kind: str, dry_run: bool, older_than_s: float | None) -> dict[str, Any]:
        """One `gc KIND` run on the hub (RunGc): the run's own result, as core returns it."""
        from cortexctl.proto import admin_pb2 as apb

        request = apb.RunGcRequest(kind=kind, dry_run=dry_run)
        if older_than_s is not None:
            request.older_than_ms = int(older_than_s * 1000)
        result: dict[str, Any] = _json(
            self.call("RunGc", request, timeout=LONG_CALL_TIMEOUT_S).result_json
        )
        if kind == "locks":
            result["expired"] = [views.from_jsonable(views.LeaseView, x) for x in result["expired"]]
        return result

    # mirrors, hubs, audit

    def mirrors_ls(self, ref: str) -> views.MirrorListing:
        from cortexctl.proto import admin_pb2 as apb

        return _view(
            views.MirrorListing, self.call("ListMirrors", apb.ListMirrorsRequest(node=ref)).json
        )

    def mirrors_rm(self, ref: str, paths: Sequence[str], dry_run: bool) -> views.MirrorRemoval:
        from cortexctl.proto import admin_pb2 as apb

        request = apb.RemoveMirrorFilesRequest(node=ref, paths=list(paths), dry_run=dry_run)
        return _view(
            views.MirrorRemoval,
            self.call("RemoveMirrorFiles", request, timeout=LONG_CALL_TIMEOUT_S).json,
        )

    def hubs_list(self, include_stopped: bool) -> list[views.HubView]:
        from cortexctl.proto import admin_pb2 as apb

        response = self.call("ListHubs", apb.ListHubsRequest(include_stopped=include_stopped))
        return [_view(views.HubView, item.json) for item in response.hubs]

    def audit_list(
        self, since: datetime | None, actor: str | None, limit: int
    ) -> list[views.AuditView]:
        from cortexctl.core import clock
        from cortexctl.proto import admin_pb2 as apb

        request = apb.ListAuditRequest(
            since_unix_ms=0 if since is None else clock.unix_ms(since),
            actor=actor or "",
            limit=limit,
        )
        response = self.call("ListAudit", request)
        return [_view(views.AuditView, item.json) for item in response.entries]

    # admin tokens

    def admin_tokens_create(
        self, name: str, role: str, ttl_s: float | None
    ) -> tuple[views.AdminTokenView, str]:
        """The new token's view, and the token (shown once)."""
        from cortexctl.proto import admin_pb2 as apb

        request = apb.CreateAdminTokenRequest(name=name, role=role)
        if ttl_s is not None:
            request.ttl_ms = int(ttl_s * 1000)
        response = self.call("CreateAdminToken", request)
        return _view(views.AdminTokenView, response.admin_token.json), response.token

    def admin_tokens_list(self, include_inactive: bool) -> list[views.AdminTokenView]:
        from cortexctl.proto import admin_pb2 as apb

        request = apb.ListAdminTokensRequest(include_inactive=include_inactive)
        response = self.call("ListAdminTokens", request)
        return [_view(views.AdminTokenView, item.json) for item in response.admin_tokens]

    def admin_tokens_revoke(self, ref: str) -> views.AdminTokenView:
        from cortexctl.proto import admin_pb2 as apb

        answer = self.call("RevokeAdminToken", apb.RevokeAdminTokenRequest(ref=ref))
        return _view(views.AdminTokenView, answer.json)


def _json(text: str) -> Any:
    if not text:
        raise CortexError(
            "the hub answered without the view this CLI prints (an older hub?); upgrade the "
            "hub, or use a local context on its host"
        )
    return json.loads(text)


def _view(cls: type[V], text: str) -> V:
    view: V = views.from_jsonable(cls, _json(text))
    return view
