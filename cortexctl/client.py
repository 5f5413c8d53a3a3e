"""A Python client of the hub's admin API, for programs such as AI orchestrators.

    from cortexctl.client import Hub

    with Hub.connect("hub.example:7443", token=TOKEN, ca_cert="ca.pem") as hub:
        task = hub.submit("build-01", ["python3", "-c", "print(6 * 7)"])
        result = task.wait(timeout=60)
        print(result.state, result.exit_code, result.stdout)

``AsyncHub`` is the one implementation, for asyncio (``async for update in task.watch()``,
``async for event in hub.events()``); ``Hub`` is the same API blocking, each method the
``AsyncHub`` one run on a private event-loop thread. Errors are the CLI's typed ones
(``cortexctl.errors``): ``NotFound``, ``Unauthenticated``, ``PermissionDenied``,
``Unavailable``... A submit carries a request id, so the client's own retries after a lost
answer never make a second task. Results whose message carries the CLI's ``--json`` view
keep it in ``data``. This module loads grpc and the generated messages only, never the store
(SQLAlchemy).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import threading
import uuid
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Concatenate, ParamSpec, TypeVar

import grpc

from cortexctl.errors import (
    EXIT_WAIT_TIMED_OUT,
    CortexError,
    InvalidArgument,
    Unavailable,
    WaitEnded,
    from_grpc_status,
)
from cortexctl.proto import admin_pb2 as apb
from cortexctl.proto import admin_pb2_grpc as apb_grpc

__all__ = [
    "AdminToken",
    "AsyncHub",
    "AsyncTask",
    "AuditEntry",
    "CreatedAdminToken",
    "CreatedInvite",
    "CredentialRotated",
    "DrainResult",
    "Event",
    "GcReport",
    "Hub",
    "HubInfo",
    "Invite",
    "JournalFailed",
    "MirrorFile",
    "MirrorListing",
    "MirrorRemoval",
    "NodeCordon",
    "NodeDeleted",
    "NodeInfo",
    "NodeRenamed",
    "NodeRevoked",
    "QuotaUsage",
    "RemovedPath",
    "SandboxChange",
    "Task",
    "TaskResult",
]

CALL_TIMEOUT_S = 30.0
LONG_CALL_TIMEOUT_S = 660.0  # gc, node deletion, mirror removal (the hub caps them at 600 s)
SUBMIT_ATTEMPTS = 3  # a submit lost to UNAVAILABLE is sent again, with the same request id
RETRY_PAUSE_S = 0.2
T = TypeVar("T")
P = ParamSpec("P")


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskResult:
    """A task as the hub's journal has it now."""

    id: str
    node_id: str
    node_name: str
    state: str  # pending | dispatched | running | succeeded | failed | cancelled | ...
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    output_truncated: bool
    error: str
    terminal: bool
    # From ``watch()``: the output that arrived with this update (stdout/stderr hold all
    # of it so far; the terminal update's are the result's own).
    stdout_chunk: bytes = b""
    stderr_chunk: bytes = b""

    @property
    def ok(self) -> bool:
        return self.state == "succeeded"


@dataclass(frozen=True)
class NodeInfo:
    id: str
    name: str
    status: str  # online | stale | offline | revoked
    online: bool
    labels: dict[str, str] = field(default_factory=dict)
    sandbox: str = ""
    running_tasks: int = 0
    cordoned: bool = False
    hostname: str = ""
    sandbox_configured: bool = False
    allowed_commands: list[str] = field(default_factory=list)
    policy_revision: int = 0
    policy_acked: int = 0
    agent_version: str = ""
    hub_id: str = ""
    last_heartbeat: datetime | None = None
    created: datetime | None = None
    revoked: bool = False


@dataclass(frozen=True)
class Invite:
    id: str
    state: str  # active | expired | used | revoked
    created: datetime | None
    expires: datetime | None
    uses_allowed: int
    uses_count: int
    revoked: bool
    labels: dict[str, str]
    sandbox: str
    note: str


@dataclass(frozen=True)
class CreatedInvite:
    invite: Invite
    token: str  # shown once


@dataclass(frozen=True)
class SandboxChange:
    node_id: str
    name: str
    sandbox: str
    allowed_commands: list[str]
    allowed_prefixes: list[str]
    allowed_env: list[str]
    network: str
    revision: int
    limits: dict[str, int]


@dataclass(frozen=True)
class QuotaUsage:
    node_id: str
    node_name: str
    quota_bytes: int  # 0: no limit
    quota_files: int
    quota_configured: bool
    used_bytes: int
    used_files: int
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeRevoked:
    id: str
    name: str
    revoked: bool
    failed_tasks: int
    dry_run: bool


@dataclass(frozen=True)
class CredentialRotated:
    id: str
    name: str
    node_credential: str  # shown once; "" on a dry run
    dry_run: bool


@dataclass(frozen=True)
class NodeRenamed:
    id: str
    old_name: str
    name: str
    dry_run: bool


@dataclass(frozen=True)
class NodeDeleted:
    id: str
    name: str
    status: str
    failed_tasks: int
    deleted_tasks: int
    mirror_state: str
    mirror_files: int
    mirror_bytes: int
    dry_run: bool
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeCordon:
    id: str
    name: str
    cordoned: bool
    dry_run: bool


@dataclass(frozen=True)
class DrainResult:
    node: NodeCordon
    drained: bool
    running_tasks: list[str]  # what still ran when the timeout passed


@dataclass(frozen=True)
class JournalFailed:
    node_id: str
    node_name: str
    failed_tasks: int
    dry_run: bool


@dataclass(frozen=True)
class GcReport:
    kind: str
    dry_run: bool
    skipped: bool  # another run held the lock; nothing done
    count: int
    files_removed: int
    bytes_removed: int
    data: dict[str, Any]  # the report as `gc KIND --json` prints it
    result: dict[str, Any]  # the run's own result


@dataclass(frozen=True)
class MirrorFile:
    path: str
    size: int
    mtime: datetime | None  # when its upload completed
    sha256: str
    hub_id: str  # the hub whose disk holds it (downloads come from the hub that does)
    hub_state: str  # live | dead | stopped | unknown


@dataclass(frozen=True)
class MirrorListing:
    node_id: str
    node_name: str
    files: list[MirrorFile]
    total_bytes: int


@dataclass(frozen=True)
class RemovedPath:
    path: str
    files_removed: int
    bytes_removed: int


@dataclass(frozen=True)
class MirrorRemoval:
    node_id: str
    node_name: str
    items: list[RemovedPath]
    files_removed: int
    bytes_removed: int
    dry_run: bool


@dataclass(frozen=True)
class HubInfo:
    id: str
    address: str
    hostname: str
    pid: int
    version: str
    epoch: int
    state: str  # live | dead | stopped
    started: datetime | None
    lease_expires: datetime | None
    lease_remaining_s: float
    nodes_connected: int
    stopped: datetime | None
    recovered_by_hub_id: str


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime | None
    actor: str
    actor_kind: str  # local | token | node
    source: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class AdminToken:
    id: str
    name: str
    role: str
    state: str  # active | expired | revoked
    created: datetime | None
    expires: datetime | None
    revoked: bool
    last_used: datetime | None
    created_by: str


@dataclass(frozen=True)
class CreatedAdminToken:
    admin_token: AdminToken
    token: str  # shown once


@dataclass(frozen=True)
class Event:
    """One mesh event (``event``: watching, node_added, node_joined, node_left, node_stale,
    node_revoked, policy_changed, task_finished, audit); ``data`` is the JSON line
    `mesh status --watch-events` prints for it."""

    event: str
    ts: datetime | None
    node_id: str
    name: str
    status: str
    previous: str
    task_id: str
    state: str
    audit: AuditEntry | None
    data: dict[str, Any]


def _time(unix_ms: int) -> datetime | None:
    return datetime.fromtimestamp(unix_ms / 1000, UTC) if unix_ms else None


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return value


def _from_pb(cls: type[T], message: Any, **given: Any) -> T:
    """``cls`` from the message's fields of the same names (``x`` from ``x_unix_ms`` as a
    time; ``data`` from its ``json``), except those ``given``."""
    names = message.DESCRIPTOR.fields_by_name
    values = dict(given)
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = item.name
        if name in values:
            continue
        if name in names:
            values[name] = _plain(getattr(message, name))
        elif f"{name}_unix_ms" in names:
            values[name] = _time(getattr(message, f"{name}_unix_ms"))
        elif name == "data" and "json" in names:
            values[name] = json.loads(message.json or "{}")
    return cls(**values)


def _result(task: apb.Task) -> TaskResult:
    return _from_pb(TaskResult, task, exit_code=task.exit_code if task.has_exit_code else None)


class _Output:
    """A watch's view of a task's output: what was stored when it began, the live chunks
    since, and at the end the result's own (authoritative) output."""

    def __init__(self) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.started = False

    def update(self, update: apb.TaskUpdate) -> TaskResult:
        task = update.task
        if task.terminal or not self.started:
            self.stdout[:], self.stderr[:] = task.stdout, task.stderr
            self.started = True
        self.stdout += update.stdout_chunk
        self.stderr += update.stderr_chunk
        return dataclasses.replace(
            _result(task),
            stdout=bytes(self.stdout),
            stderr=bytes(self.stderr),
            stdout_chunk=update.stdout_chunk,
            stderr_chunk=update.stderr_chunk,
        )


def _audit(entry: apb.AuditEntry) -> AuditEntry:
    return _from_pb(AuditEntry, entry, detail=json.loads(entry.detail_json or "{}"))


def _event(message: apb.MeshEvent) -> Event:
    return _from_pb(
        Event, message, audit=_audit(message.audit) if message.HasField("audit") else None
    )


def _typed(err: grpc.RpcError) -> CortexError:
    """The CLI's typed error for a status the hub answered with."""
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    return from_grpc_status(name, details or name)


def _pem(value: str | Path | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


def _credentials_and_target(
    address: str,
    token: str,
    ca_cert: str | Path | bytes | None,
    insecure: bool,
    cert: str | Path | bytes | None = None,
    key: str | Path | bytes | None = None,
) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, str]]]:
    if not token and cert is None:
        raise InvalidArgument("an admin token is needed; see `cortexctl admin-tokens create`")
    if (cert is None) != (key is None) or (cert is not None and ca_cert is None):
        raise InvalidArgument("a client certificate needs cert=, key= and ca_cert=")
    metadata = [("authorization", f"Bearer {token}")] if token else []
    if ca_cert is None:
        host = address.rsplit(":", 1)[0].strip("[]")
        if not insecure and host not in ("127.0.0.1", "::1", "localhost"):
            raise InvalidArgument(
                f"refusing to send an admin token in plaintext to {address}; give ca_cert= "
                "(the CA that signed the hub), or insecure=True on a trusted network"
            )
        return None, metadata
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_pem(ca_cert), private_key=_pem(key), certificate_chain=_pem(cert)
    )
    return credentials, metadata


def _submit_request(
    node: str | None,
    argv: Sequence[str],
    selector: str | None,
    script: str,
    timeout_s: int,
    env: Mapping[str, str] | None,
    cwd: str,
    request_id: str | None,
) -> apb.SubmitTaskRequest:
    return apb.SubmitTaskRequest(
        node=node or "",
        selector=selector or "",
        argv=list(argv),
        script=script,
        timeout_s=timeout_s,
        env=dict(env or {}),
        cwd=cwd,
        request_id=request_id or uuid.uuid4().hex,
    )


def _one(response: apb.SubmitTaskResponse) -> apb.SubmittedTask:
    submitted = response.tasks[0]
    if not submitted.id:
        raise CortexError(f"node {submitted.node_name} took no task: {submitted.error}")
    return submitted


def _wait_ended(task_id: str, timeout: float) -> WaitEnded:
    return WaitEnded(
        f"task {task_id} still not ended after {timeout:g}s; it is left as it is",
        EXIT_WAIT_TIMED_OUT,
    )


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


# --- the implementation (asyncio) --------------------------------------------------------


class AsyncTask:
    """A submitted task; ``wait()`` for its result or ``watch()`` its state changes."""

    def __init__(self, hub: AsyncHub, task_id: str, node_name: str = "") -> None:
        self.hub = hub
        self.id = task_id
        self.node_name = node_name

    def __repr__(self) -> str:
        return f"AsyncTask({self.id!r}, node={self.node_name!r})"

    async def result(self) -> TaskResult:
        """The task now, ended or not."""
        return _result(await self.hub._call("ShowTask", apb.ShowTaskRequest(id=self.id)))

    async def wait(self, timeout: float | None = None) -> TaskResult:
        """Until the task ends; ``WaitEnded`` (exit code 120) if ``timeout`` passes."""
        request = apb.WaitTaskRequest(id=self.id, timeout_ms=int((timeout or 0) * 1000))
        call_timeout = None if timeout is None else timeout + CALL_TIMEOUT_S
        while True:
            response = await self.hub._call("WaitTask", request, timeout=call_timeout)
            if response.ended:
                return _result(response.task)
            if timeout is not None:
                raise _wait_ended(self.id, timeout)

    async def watch(self) -> AsyncIterator[TaskResult]:
        """The task now, then its output as it comes (``stdout_chunk``, ``stderr_chunk``)
        and each change of its state; the last one is terminal."""
        output = _Output()
        async for update in self.hub._stream("WatchTask", apb.WatchTaskRequest(id=self.id)):
            yield output.update(update)

    async def cancel(self, reason: str = "cancelled by an orchestrator") -> TaskResult:
        request = apb.CancelTaskRequest(id=self.id, reason=reason)
        return _result(await self.hub._call("CancelTask", request))


class AsyncHub:
    """A connection to one hub's admin API, for asyncio. Method names follow the CLI:
    ``set_sandbox`` is `nodes sandbox`, ``gc`` is `gc KIND`, ``audit`` is `audit list`."""

    def __init__(self, channel: grpc.aio.Channel, metadata: list[tuple[str, str]]) -> None:
        self._channel = channel
        self._metadata = metadata
        self._stub = apb_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        token: str,
        ca_cert: str | Path | bytes | None = None,
        insecure: bool = False,
        cert: str | Path | bytes | None = None,
        key: str | Path | bytes | None = None,
    ) -> AsyncHub:
        """Connect to ``HOST:PORT``; TLS when ``ca_cert`` is given (required off loopback
        unless ``insecure``), with a client certificate (``cert``, ``key``) for a hub that
        asks for one. Nothing is sent until the first call."""
        credentials, metadata = _credentials_and_target(
            address, token, ca_cert, insecure, cert, key
        )
        channel = (
            grpc.aio.secure_channel(address, credentials)
            if credentials is not None
            else grpc.aio.insecure_channel(address)
        )
        return cls(channel, metadata)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncHub:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(
        self, method: str, request: Any, *, timeout: float | None = CALL_TIMEOUT_S
    ) -> Any:
        try:
            return await getattr(self._stub, method)(
                request, metadata=self._metadata, timeout=timeout
            )
        except grpc.RpcError as err:
            raise _typed(err) from None

    async def _stream(self, method: str, request: Any) -> AsyncIterator[Any]:
        call = getattr(self._stub, method)(request, metadata=self._metadata)
        try:
            async for item in call:
                yield item
        except grpc.RpcError as err:
            raise _typed(err) from None
        finally:
            call.cancel()

    # tasks

    async def submit(
        self,
        node: str,
        argv: Sequence[str] = (),
        *,
        script: str = "",
        timeout_s: int = 0,
        env: Mapping[str, str] | None = None,
        cwd: str = "",
        request_id: str | None = None,
    ) -> AsyncTask:
        """Submit a task to one node (name, id or id prefix); it is dispatched at once if
        the node is connected. A REJECTED task is returned as it is (see ``wait()``)."""
        request = _submit_request(node, argv, None, script, timeout_s, env, cwd, request_id)
        submitted = _one(await self._submit(request))
        return AsyncTask(self, submitted.id, submitted.node_name)

    async def submit_many(
        self,
        selector: str,
        argv: Sequence[str] = (),
        *,
        script: str = "",
        timeout_s: int = 0,
        env: Mapping[str, str] | None = None,
        cwd: str = "",
        request_id: str | None = None,
    ) -> list[AsyncTask]:
        """One task per active node matching ``selector`` (e.g. ``"zone=eu,gpu"``)."""
        request = _submit_request(None, argv, selector, script, timeout_s, env, cwd, request_id)
        response = await self._submit(request)
        return [AsyncTask(self, s.id, s.node_name) for s in response.tasks if s.id]

    async def _submit(self, request: apb.SubmitTaskRequest) -> apb.SubmitTaskResponse:
        for attempt in range(SUBMIT_ATTEMPTS):
            try:
                response: apb.SubmitTaskResponse = await self._call("SubmitTask", request)
                return response
            except Unavailable:
                if attempt == SUBMIT_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(RETRY_PAUSE_S * (attempt + 1))
        raise AssertionError("unreachable")

    async def task(self, task_id: str) -> AsyncTask:
        result = _result(await self._call("ShowTask", apb.ShowTaskRequest(id=task_id)))
        return AsyncTask(self, result.id, result.node_name)

    async def tasks(
        self,
        *,
        node: str | None = None,
        selector: str | None = None,
        states: Sequence[str] = (),
        limit: int = 50,
    ) -> list[TaskResult]:
        """`tasks list`: newest first."""
        request = apb.ListTasksRequest(
            node=node or "", selector=selector or "", states=list(states), limit=limit
        )
        return [_result(t) for t in (await self._call("ListTasks", request)).tasks]

    async def cancel_task(
        self, task_id: str, reason: str = "cancelled by an operator", *, dry_run: bool = False
    ) -> TaskResult:
        request = apb.CancelTaskRequest(id=task_id, reason=reason, dry_run=dry_run)
        return _result(await self._call("CancelTask", request))

    # nodes

    async def nodes(self, selector: str | None = None, *, active: bool = False) -> list[NodeInfo]:
        """`nodes list` (``active``: leave out revoked nodes)."""
        request = apb.ListNodesRequest(selector=selector or "", include_revoked=not active)
        return [_from_pb(NodeInfo, n) for n in (await self._call("ListNodes", request)).nodes]

    async def node(self, node: str) -> NodeInfo:
        """`nodes show`."""
        return _from_pb(NodeInfo, await self._call("ShowNode", apb.ShowNodeRequest(node=node)))

    async def set_sandbox(
        self,
        nodes: Sequence[str] = (),
        *,
        all_nodes: bool = False,
        selector: str | None = None,
        include_self_reported: bool = False,
        mode: str | None = None,
        allowed_commands: Sequence[str] | None = None,
        add_env: Sequence[str] = (),
        clear_env: bool = False,
        network: bool | None = None,
        limits: Mapping[str, int] | None = None,
        reset_limits: bool = False,
        dry_run: bool = False,
    ) -> list[SandboxChange]:
        """`nodes sandbox`: change only what is given (``network``: True allows, False
        denies, None keeps); ``allowed_commands`` replaces the allow-list."""
        request = apb.SetSandboxRequest(
            nodes=list(nodes),
            all=all_nodes,
            selector=selector or "",
            include_self_reported=include_self_reported,
            mode=mode or "",
            set_allowed_commands=allowed_commands is not None,
            allowed_commands=list(allowed_commands or ()),
            add_env=list(add_env),
            clear_env=clear_env,
            network="" if network is None else "allow" if network else "deny",
            limits=dict(limits or {}),
            reset_limits=reset_limits,
            dry_run=dry_run,
        )
        response = await self._call("SetSandbox", request)
        return [_from_pb(SandboxChange, c) for c in response.changes]

    async def set_quota(
        self,
        node: str,
        *,
        quota_bytes: int | None = None,
        quota_files: int | None = None,
        clear: bool = False,
    ) -> QuotaUsage:
        """`nodes quota` (0: no limit; None keeps the value)."""
        request = apb.SetQuotaRequest(
            node=node, quota_bytes=quota_bytes, quota_files=quota_files, clear=clear
        )
        return _from_pb(QuotaUsage, await self._call("SetQuota", request))

    async def revoke_nodes(
        self,
        nodes: Sequence[str] = (),
        *,
        selector: str | None = None,
        include_self_reported: bool = False,
        dry_run: bool = False,
    ) -> list[NodeRevoked]:
        """`nodes revoke`: named nodes, or a selector's."""
        request = apb.RevokeNodeRequest(
            nodes=list(nodes),
            selector=selector or "",
            include_self_reported=include_self_reported,
            dry_run=dry_run,
        )
        response = await self._call("RevokeNode", request)
        return [_from_pb(NodeRevoked, r) for r in response.nodes]

    async def rotate_credential(self, node: str, *, dry_run: bool = False) -> CredentialRotated:
        """`nodes rotate-credential`: the new credential is in the result, once."""
        request = apb.RotateCredentialRequest(node=node, dry_run=dry_run)
        return _from_pb(CredentialRotated, await self._call("RotateCredential", request))

    async def rename_node(self, node: str, new_name: str, *, dry_run: bool = False) -> NodeRenamed:
        request = apb.RenameNodeRequest(node=node, new_name=new_name, dry_run=dry_run)
        return _from_pb(NodeRenamed, await self._call("RenameNode", request))

    async def delete_node(
        self, node: str, *, keep_mirror: bool = False, dry_run: bool = False
    ) -> NodeDeleted:
        request = apb.DeleteNodeRequest(node=node, keep_mirror=keep_mirror, dry_run=dry_run)
        response = await self._call("DeleteNode", request, timeout=LONG_CALL_TIMEOUT_S)
        return _from_pb(NodeDeleted, response)

    async def cordon(self, node: str, *, dry_run: bool = False) -> NodeCordon:
        request = apb.CordonNodeRequest(node=node, cordoned=True, dry_run=dry_run)
        return _from_pb(NodeCordon, await self._call("CordonNode", request))

    async def uncordon(self, node: str, *, dry_run: bool = False) -> NodeCordon:
        request = apb.CordonNodeRequest(node=node, cordoned=False, dry_run=dry_run)
        return _from_pb(NodeCordon, await self._call("CordonNode", request))

    async def drain(self, node: str, *, timeout: float | None = None) -> DrainResult:
        """`nodes drain`: cordon, then wait until it runs no task or ``timeout`` passes."""
        request = apb.DrainNodeRequest(node=node, timeout_ms=_ms(timeout) or 0)
        call_timeout = None if timeout is None else timeout + CALL_TIMEOUT_S
        response = await self._call("DrainNode", request, timeout=call_timeout)
        cordon = _from_pb(NodeCordon, response.node)
        return DrainResult(cordon, response.drained, list(response.running_tasks))

    # journal, gc

    async def fail_node_tasks(
        self, node: str, reason: str = "", *, dry_run: bool = False
    ) -> JournalFailed:
        """`journal fail`: FAIL every unfinished task of a node."""
        request = apb.FailNodeTasksRequest(node=node, reason=reason, dry_run=dry_run)
        return _from_pb(JournalFailed, await self._call("FailNodeTasks", request))

    async def gc(
        self, kind: str, *, dry_run: bool = False, older_than: float | None = None
    ) -> GcReport:
        """`gc KIND` (locks, mirrors, invites, tasks, audit) on the hub; ``older_than`` in
        seconds is the kind's --ttl / --older-than."""
        request = apb.RunGcRequest(kind=kind, dry_run=dry_run, older_than_ms=_ms(older_than))
        response = await self._call("RunGc", request, timeout=LONG_CALL_TIMEOUT_S)
        return _from_pb(GcReport, response, result=json.loads(response.result_json or "{}"))

    # mirrors

    async def list_mirrors(self, node: str) -> MirrorListing:
        """`mirrors ls`: the files the hubs hold for a node, each with its hub."""
        response = await self._call("ListMirrors", apb.ListMirrorsRequest(node=node))
        files = [_from_pb(MirrorFile, f) for f in response.files]
        return _from_pb(MirrorListing, response, files=files)

    async def remove_mirror_files(
        self, node: str, paths: Sequence[str] = (), *, dry_run: bool = False
    ) -> MirrorRemoval:
        """`mirrors rm`: the whole mirror without ``paths``."""
        request = apb.RemoveMirrorFilesRequest(node=node, paths=list(paths), dry_run=dry_run)
        response = await self._call("RemoveMirrorFiles", request, timeout=LONG_CALL_TIMEOUT_S)
        items = [_from_pb(RemovedPath, i) for i in response.items]
        return _from_pb(MirrorRemoval, response, items=items)

    async def download_chunks(self, node: str, path: str) -> AsyncIterator[bytes]:
        """The bytes of one file of a node's mirror on the answering hub, chunk by chunk."""
        request = apb.DownloadMirrorFileRequest(node=node, path=path)
        async for chunk in self._stream("DownloadMirrorFile", request):
            if chunk.data:
                yield chunk.data

    async def download(self, node: str, path: str, out: BinaryIO) -> int:
        """Write one mirror file to ``out``; return the bytes written."""
        written = 0
        async for data in self.download_chunks(node, path):
            out.write(data)
            written += len(data)
        return written

    # hubs, audit, events

    async def hubs(self, *, include_stopped: bool = False) -> list[HubInfo]:
        """`hubs list`."""
        request = apb.ListHubsRequest(include_stopped=include_stopped)
        return [_from_pb(HubInfo, h) for h in (await self._call("ListHubs", request)).hubs]

    async def audit(
        self, *, since: datetime | None = None, actor: str | None = None, limit: int = 200
    ) -> list[AuditEntry]:
        """`audit list`: oldest first (the newest ``limit``), since a time, by one actor."""
        request = apb.ListAuditRequest(
            since_unix_ms=int(since.timestamp() * 1000) if since else 0,
            actor=actor or "",
            limit=limit,
        )
        return [_audit(e) for e in (await self._call("ListAudit", request)).entries]

    async def events(self, *, interval: float | None = None) -> AsyncIterator[Event]:
        """`mesh status --watch-events`: "watching", then each change, until you stop."""
        request = apb.WatchEventsRequest(interval_ms=_ms(interval) or 0)
        async for message in self._stream("WatchEvents", request):
            yield _event(message)

    # invites, admin tokens

    async def create_invite(
        self,
        *,
        ttl: float,
        uses: int = 1,
        labels: Mapping[str, str] | None = None,
        sandbox: str | None = None,
        note: str = "",
    ) -> CreatedInvite:
        request = apb.CreateInviteRequest(
            ttl_ms=int(ttl * 1000),
            uses=uses,
            labels=dict(labels or {}),
            sandbox=sandbox or "",
            note=note,
        )
        response = await self._call("CreateInvite", request)
        return CreatedInvite(_from_pb(Invite, response.invite), response.token)

    async def invites(self, *, include_inactive: bool = False) -> list[Invite]:
        request = apb.ListInvitesRequest(include_inactive=include_inactive)
        return [_from_pb(Invite, i) for i in (await self._call("ListInvites", request)).invites]

    async def revoke_invite(self, invite_id: str) -> Invite:
        request = apb.RevokeInviteRequest(id=invite_id)
        return _from_pb(Invite, await self._call("RevokeInvite", request))

    async def create_admin_token(
        self, name: str, role: str, *, ttl: float | None = None
    ) -> CreatedAdminToken:
        """`admin-tokens create` (``ttl`` in seconds; None: it never expires)."""
        request = apb.CreateAdminTokenRequest(name=name, role=role, ttl_ms=_ms(ttl))
        response = await self._call("CreateAdminToken", request)
        return CreatedAdminToken(_from_pb(AdminToken, response.admin_token), response.token)

    async def admin_tokens(self, *, include_inactive: bool = False) -> list[AdminToken]:
        request = apb.ListAdminTokensRequest(include_inactive=include_inactive)
        response = await self._call("ListAdminTokens", request)
        return [_from_pb(AdminToken, t) for t in response.admin_tokens]

    async def revoke_admin_token(self, ref: str) -> AdminToken:
        request = apb.RevokeAdminTokenRequest(ref=ref)
        return _from_pb(AdminToken, await self._call("RevokeAdminToken", request))

    async def status(self) -> dict[str, Any]:
        """`mesh status --json`."""
        response = await self._call("MeshStatus", apb.MeshStatusRequest())
        return dict(json.loads(response.json or "{}"))


# --- the blocking API: AsyncHub's methods run on a private event-loop thread -------------


class _LoopThread:
    """One event loop on a daemon thread for every blocking ``Hub`` of this process."""

    _shared: _LoopThread | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="cortexctl-client", daemon=True
        )
        self.thread.start()

    @classmethod
    def shared(cls) -> _LoopThread:
        with cls._lock:
            if cls._shared is None or cls._shared.pid != os.getpid():  # none yet, or forked
                cls._shared = cls()
            return cls._shared

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def iterate(self, stream: AsyncIterator[T]) -> Iterator[T]:
        """A blocking iterator over an async one; closed with it."""

        async def step() -> tuple[bool, T | None]:
            try:
                return True, await anext(stream)
            except StopAsyncIteration:
                return False, None

        async def close() -> None:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

        try:
            while True:
                more, item = self.run(step())
                if not more:
                    return
                yield item  # type: ignore[misc]
        finally:
            self.run(close())


F = TypeVar("F", bound=Callable[..., Any])


def _named(call: F, fn: Callable[..., Any]) -> F:
    """``call`` under ``fn``'s name and docstring (for help() and tracebacks)."""
    call.__name__ = call.__qualname__ = fn.__name__
    call.__doc__ = fn.__doc__
    return call


def _blocking(
    fn: Callable[Concatenate[AsyncHub, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Hub, P], T]:
    def call(self: Hub, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._loop.run(fn(self._hub, *args, **kwargs))

    return _named(call, fn)


def _blocking_stream(
    fn: Callable[Concatenate[AsyncHub, P], AsyncIterator[T]],
) -> Callable[Concatenate[Hub, P], Iterator[T]]:
    def call(self: Hub, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._loop.iterate(fn(self._hub, *args, **kwargs))

    return _named(call, fn)


class Task:
    """``AsyncTask``, blocking."""

    def __init__(self, hub: Hub, task: AsyncTask) -> None:
        self.hub = hub
        self._task = task
        self.id = task.id
        self.node_name = task.node_name

    def __repr__(self) -> str:
        return f"Task({self.id!r}, node={self.node_name!r})"

    def result(self) -> TaskResult:
        """The task now, ended or not."""
        return self.hub._loop.run(self._task.result())

    def wait(self, timeout: float | None = None) -> TaskResult:
        """Block until the task ends; ``WaitEnded`` (exit code 120) if ``timeout`` passes."""
        return self.hub._loop.run(self._task.wait(timeout))

    def watch(self) -> Iterator[TaskResult]:
        """The task now, then its output as it comes and each change of its state; the
        last one is terminal."""
        return self.hub._loop.iterate(self._task.watch())

    def cancel(self, reason: str = "cancelled by an orchestrator") -> TaskResult:
        return self.hub._loop.run(self._task.cancel(reason))


class Hub:
    """A connection to one hub's admin API (blocking calls): ``AsyncHub``'s methods."""

    def __init__(self, loop: _LoopThread, hub: AsyncHub) -> None:
        self._loop = loop
        self._hub = hub

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        token: str,
        ca_cert: str | Path | bytes | None = None,
        insecure: bool = False,
        cert: str | Path | bytes | None = None,
        key: str | Path | bytes | None = None,
    ) -> Hub:
        """See ``AsyncHub.connect``."""
        _credentials_and_target(address, token, ca_cert, insecure, cert, key)  # refuse here
        loop = _LoopThread.shared()

        async def open_channel() -> AsyncHub:  # on the loop the channel will serve
            return AsyncHub.connect(
                address, token=token, ca_cert=ca_cert, insecure=insecure, cert=cert, key=key
            )

        return cls(loop, loop.run(open_channel()))

    def _call(self, method: str, request: Any, *, timeout: float | None = CALL_TIMEOUT_S) -> Any:
        """One unary call by method name, for callers that build requests (cli/remote.py)."""
        return self._loop.run(self._hub._call(method, request, timeout=timeout))

    def _stream(self, method: str, request: Any) -> Iterator[Any]:
        """One server-streaming call by method name; typed errors."""
        return self._loop.iterate(self._hub._stream(method, request))

    def close(self) -> None:
        self._loop.run(self._hub.close())

    def __enter__(self) -> Hub:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def submit(
        self,
        node: str,
        argv: Sequence[str] = (),
        *,
        script: str = "",
        timeout_s: int = 0,
        env: Mapping[str, str] | None = None,
        cwd: str = "",
        request_id: str | None = None,
    ) -> Task:
        """Submit a task to one node; see ``AsyncHub.submit``."""
        task = self._loop.run(
            self._hub.submit(
                node,
                argv,
                script=script,
                timeout_s=timeout_s,
                env=env,
                cwd=cwd,
                request_id=request_id,
            )
        )
        return Task(self, task)

    def submit_many(
        self,
        selector: str,
        argv: Sequence[str] = (),
        *,
        script: str = "",
        timeout_s: int = 0,
        env: Mapping[str, str] | None = None,
        cwd: str = "",
        request_id: str | None = None,
    ) -> list[Task]:
        """One task per active node matching ``selector``; see ``AsyncHub.submit_many``."""
        tasks = self._loop.run(
            self._hub.submit_many(
                selector,
                argv,
                script=script,
                timeout_s=timeout_s,
                env=env,
                cwd=cwd,
                request_id=request_id,
            )
        )
        return [Task(self, task) for task in tasks]

    def task(self, task_id: str) -> Task:
        return Task(self, self._loop.run(self._hub.task(task_id)))

    tasks = _blocking(AsyncHub.tasks)
    cancel_task = _blocking(AsyncHub.cancel_task)
    nodes = _blocking(AsyncHub.nodes)
    node = _blocking(AsyncHub.node)
    set_sandbox = _blocking(AsyncHub.set_sandbox)
    set_quota = _blocking(AsyncHub.set_quota)
    revoke_nodes = _blocking(AsyncHub.revoke_nodes)
    rotate_credential = _blocking(AsyncHub.rotate_credential)
    rename_node = _blocking(AsyncHub.rename_node)
    delete_node = _blocking(AsyncHub.delete_node)
    cordon = _blocking(AsyncHub.cordon)
    uncordon = _blocking(AsyncHub.uncordon)
    drain = _blocking(AsyncHub.drain)
    fail_node_tasks = _blocking(AsyncHub.fail_node_tasks)
    gc = _blocking(AsyncHub.gc)
    list_mirrors = _blocking(AsyncHub.list_mirrors)
    remove_mirror_files = _blocking(AsyncHub.remove_mirror_files)
    download_chunks = _blocking_stream(AsyncHub.download_chunks)
    download = _blocking(AsyncHub.download)
    hubs = _blocking(AsyncHub.hubs)
    audit = _blocking(AsyncHub.audit)
    events = _blocking_stream(AsyncHub.events)
    create_invite = _blocking(AsyncHub.create_invite)
    invites = _blocking(AsyncHub.invites)
    revoke_invite = _blocking(AsyncHub.revoke_invite)
    create_admin_token = _blocking(AsyncHub.create_admin_token)
    admin_tokens = _blocking(AsyncHub.admin_tokens)
    revoke_admin_token = _blocking(AsyncHub.revoke_admin_token)
    status = _blocking(AsyncHub.status)
