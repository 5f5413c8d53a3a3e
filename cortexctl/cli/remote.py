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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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
WAIT_SLICE_S = 600.0  # one WaitTask call waits at most this long; the CLI asks again


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

        return _view(  # type: ignore[no-any-return]
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

        return _view(views.TaskView, self.call("ShowTask", apb.ShowTaskRequest(id=ref)).json)  # type: ignore[no-any-return]

    def tasks_cancel(self, ref: str, reason: str, dry_run: bool) -> views.TaskView:
        from cortexctl.proto import admin_pb2 as apb

        request = apb.CancelTaskRequest(id=ref, reason=reason, dry_run=dry_run)
        return _view(views.TaskView, self.call("CancelTask", request).json)  # type: ignore[no-any-return]

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
        return _view(views.MeshSnapshot, response.json)  # type: ignore[no-any-return]


def _view(cls: type[Any], text: str) -> Any:
    if not text:
        raise CortexError(
            "the hub answered without the view this CLI prints (an older hub?); upgrade the "
            "hub, or use a local context on its host"
        )
    return views.from_jsonable(cls, json.loads(text))
