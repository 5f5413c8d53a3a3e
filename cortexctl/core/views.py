"""Typed views of command results and their JSON form: the one definition of the contract.

Every command's machine output (``-o json|jsonl|yaml``) is a view from here or from the
core module that owns it (``NodeView``, ``TaskView``, ``InviteView``...): field names are
the keys, one vocabulary across commands (docs/json.md lists them). A key that was
renamed keeps its old name alongside for one release (``legacy_keys``, CHANGELOG.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from cortexctl.core import clock, states
from cortexctl.errors import EXIT_TASK_LOST

if TYPE_CHECKING:
    from cortexctl.config import Settings
    from cortexctl.core.selectors import Selector
    from cortexctl.store.models import Task

# Bumped when a key is removed or changes meaning; adding keys keeps the version.
OUTPUT_SCHEMA_VERSION = 2

# Renamed keys are printed under their old name too, for one release (CHANGELOG.md lists
# them). CORTEX_JSON_LEGACY=0 leaves them out, to try a script against the next schema.
LEGACY_ENV = "CORTEX_JSON_LEGACY"


def legacy_keys_wanted() -> bool:
    import os

    return os.environ.get(LEGACY_ENV, "1") not in ("0", "false", "no")


def to_jsonable(value: Any, *, legacy: bool | None = None) -> Any:
    """Dataclasses to dicts (field names are the stable keys), datetimes to ISO 8601 UTC.

    ``legacy`` (default: ``legacy_keys_wanted()``) adds the old names of renamed keys, as
    the CLI prints them for one release; the admin API sends the current names only."""
    if legacy is None:
        legacy = legacy_keys_wanted()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {
            item.name: to_jsonable(getattr(value, item.name), legacy=legacy)
            for item in dataclasses.fields(value)
            if not item.name.startswith("_")
        }
        data.update(to_jsonable(getattr(value, "_extra", None) or {}, legacy=legacy))
        if legacy:
            for old, new in getattr(value, "legacy_keys", {}).items():
                data[old] = to_jsonable(getattr(value, new), legacy=legacy)
            for name, renamed in getattr(value, "nested_legacy_keys", {}).items():
                inner = data[name]
                inner |= {old: inner[new] for old, new in renamed.items() if new in inner}
            data.update(to_jsonable(getattr(value, "_legacy", None) or {}, legacy=legacy))
        return data
    if isinstance(value, datetime):
        return clock.iso(value)
    if isinstance(value, dict):
        return {str(key): to_jsonable(item, legacy=legacy) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(item, legacy=legacy) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


# --- what the hub sends ---------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    """A claimed task as its node receives it (the hub's ``TaskAssignment``)."""

    task_id: str
    argv: list[str]
    script: str
    timeout_s: int
    env: dict[str, str]
    cwd: str

    @classmethod
    def of(cls, task: Task) -> Assignment:
        return cls(
            task_id=task.id,
            argv=list(task.argv or []),
            script=task.script,
            timeout_s=task.timeout_s,
            env=dict(task.env or {}),
            cwd=task.cwd,
        )


def from_jsonable(cls: type[Any], data: Any) -> Any:
    """The view ``to_jsonable`` printed, back (the remote CLI reads the admin API's ``json``).

    Keys the class does not have (legacy names, newer fields) are left out, so a hub one
    release apart still answers in views this CLI prints exactly as its own.
    """
    import types
    import typing

    hints = typing.get_type_hints(cls)
    values = {}
    for item in dataclasses.fields(cls):
        if item.name.startswith("_") or item.name not in data:
            continue
        values[item.name] = _from_json(hints[item.name], data[item.name], types, typing)
    return cls(**values)


def _from_json(hint: Any, value: Any, types: Any, typing: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _from_json(inner[0], value, types, typing) if len(inner) == 1 else value
    if hint is datetime:
        return datetime.fromisoformat(value)
    if dataclasses.is_dataclass(hint):
        return from_jsonable(hint, value)  # type: ignore[arg-type]
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return [_from_json(item, each, types, typing) for each in value]
    if origin is tuple:
        return tuple(value)
    return value


# --- what core reads from the store, as the CLI prints it ---------------------------------
# Plain dataclasses, importable without the store: the remote CLI builds the same views
# from the admin API's answers (``from_jsonable``) and renders them on the same path.


@dataclass(frozen=True)
class TaskView:
    id: str
    node_id: str
    node_name: str
    state: str
    argv: list[str]
    script: str
    cwd: str
    timeout_s: int
    exit_code: int | None
    stdout: str
    stderr: str
    output_truncated: bool
    error: str
    created_at: datetime
    dispatched_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    hub_id: str | None
    expires_at: datetime | None = None
    hub_epoch: int | None = None


def wait_exit_code(task: TaskView) -> int:
    """The exit code of a wait on an ended task: the task's own if it ran to an exit.

    A negative code (killed by signal N) becomes 128 + N, as a shell reports it. A task
    that ended without an exit of its own gets one of 121-125 (see ``cortexctl.errors``).
    """
    if task.state in states.NO_EXIT_CODES:
        return states.NO_EXIT_CODES[task.state]
    if task.state == states.SUCCEEDED:
        return task.exit_code or 0
    if task.exit_code is None:
        return EXIT_TASK_LOST
    if task.exit_code < 0:
        return min(128 - task.exit_code, 255)
    return task.exit_code & 0xFF or EXIT_TASK_LOST


@dataclass(frozen=True)
class Submitted:
    """One task of a submit (one per node on a fan-out); state "skipped" if not created."""

    id: str
    state: str
    node_id: str
    node_name: str
    error: str = ""


@dataclass(frozen=True)
class TaskLogs:
    id: str
    state: str
    stdout: str
    stderr: str
    output_truncated: bool
    ended: bool

    @classmethod
    def of(cls, task: TaskView) -> TaskLogs:
        """What a task's view holds of its output so far."""
        return cls(
            task.id,
            task.state,
            task.stdout,
            task.stderr,
            task.output_truncated,
            task.state in states.TERMINAL,
        )


@dataclass(frozen=True)
class Submission:
    """What a submit did: ``tasks`` (one per target; state "skipped" for a node that takes
    no tasks on a fan-out), ``selector`` for a fan-out (None for one named node), and the
    names of the nodes whose new tasks wait because the node is not connected."""

    tasks: list[Submitted]
    selector: Selector | None
    not_connected: tuple[str, ...]

    @property
    def fan_out(self) -> bool:
        return self.selector is not None

    @property
    def created(self) -> list[Submitted]:
        return [task for task in self.tasks if task.id]

    @property
    def skipped(self) -> list[str]:
        return [task.node_name for task in self.tasks if not task.id]

    @property
    def rejected(self) -> Submitted | None:
        """The one task of a single-node submit, if the node's sandbox policy refused it."""
        if self.selector is None and self.tasks[0].state == states.REJECTED:
            return self.tasks[0]
        return None


@dataclass(frozen=True)
class NodeView:
    id: str
    name: str
    hostname: str
    online: bool
    status: str  # online | stale | offline | revoked
    sandbox: str
    sandbox_configured: bool
    allowed_commands: list[str]
    allowed_prefixes: list[str]  # STRICT argv pins, each as a shell-quoted line
    allowed_env: list[str]
    network: str  # allow | deny
    limits: dict[str, int]  # 0: the agent's own limit
    isolation: str  # bwrap | none | unknown, as the node's agent reported
    capabilities: list[str]
    policy_revision: int
    policy_acked: int  # the revision the node last confirmed it applies
    labels: dict[str, Any]  # every label; a trusted value wins over a self-reported one
    trusted_labels: dict[str, Any]  # given by the invite or an operator
    self_labels: dict[str, Any]  # reported by the node itself, not trusted
    agent_version: str
    hub_id: str | None
    last_heartbeat: datetime | None
    created_at: datetime
    revoked: bool
    running_tasks: int
    cordoned: bool = False  # no new tasks are dispatched to it (`nodes cordon`)


@dataclass(frozen=True)
class InviteView:
    id: str
    created_at: datetime
    expires_at: datetime
    uses_allowed: int
    uses_count: int
    revoked: bool
    labels: dict[str, Any]
    sandbox: str | None
    state: str  # active | expired | used | revoked
    note: str
    name: str | None  # the name the joining node gets
    name_prefix: str | None  # or the prefix its name must start with


@dataclass(frozen=True)
class Usage:
    """A node's quota (effective; 0 = none) and what its mirror holds."""

    node_id: str
    node_name: str
    quota_bytes: int
    quota_files: int
    quota_configured: bool  # the node has its own quota (else the hub default applies)
    used_bytes: int
    used_files: int

    @property
    def limited(self) -> bool:
        return bool(self.quota_bytes or self.quota_files)


@dataclass(frozen=True)
class NodeStatus:
    id: str
    name: str
    status: str  # online | stale | offline | revoked
    hub_id: str | None
    sandbox: str
    policy_revision: int
    last_heartbeat: datetime | None
    running_tasks: int
    uploads_in_flight: int


@dataclass(frozen=True)
class JobStatusView:
    hub_id: str
    job: str
    interval_s: float
    last_started_at: datetime | None
    last_duration_s: float | None
    last_outcome: str
    last_error: str
    last_result: dict[str, Any]
    next_run_at: datetime | None
    runs: int
    failures: int


# summary keys renamed in schema 2: `nodes`/`hubs` are lists at the top of the snapshot,
# `online`/`revoked`... a node's booleans, and its count of running tasks `running_tasks`.
SUMMARY_LEGACY_KEYS = {
    "nodes": "node_count",
    "online": "online_count",
    "stale": "stale_count",
    "offline": "offline_count",
    "revoked": "revoked_count",
    "hubs": "hub_count",
    "tasks_running": "running_tasks",
    "tasks_pending": "pending_tasks",
}


@dataclass(frozen=True)
class MeshSnapshot:
    taken_at: datetime
    nodes: list[NodeStatus]
    hubs: list[str]
    summary: dict[str, int]
    jobs: list[JobStatusView] = field(default_factory=list)

    nested_legacy_keys: ClassVar[dict[str, dict[str, str]]] = {"summary": SUMMARY_LEGACY_KEYS}


@dataclass(frozen=True)
class HealthCheck:
    exit_code: int  # 0 ok, 1 warning, 2 critical, 3 unknown (as nagios plugins exit)
    label: str  # OK, WARNING, CRITICAL, UNKNOWN
    line: str  # the one line a monitor shows
    problems: list[str]
    offline_nodes: list[str]
    failed_jobs: list[str]
    dead_hubs: list[str]
    live_hubs: int

    legacy_keys: ClassVar[dict[str, str]] = {"status": "exit_code", "summary": "line"}


# --- results of commands that change something ---------------------------------------------


@dataclass(frozen=True)
class NodeCordon:
    id: str
    name: str
    cordoned: bool
    dry_run: bool = False


@dataclass(frozen=True)
class InviteCreated:
    id: str
    token: str  # shown once, never stored
    expires_at: datetime
    uses_allowed: int
    sandbox: str | None
    labels: dict[str, Any]
    name: str | None = None  # the name the joining node gets
    name_prefix: str | None = None  # or the prefix its name must start with
    legacy_keys: ClassVar[dict[str, str]] = {"uses": "uses_allowed"}


@dataclass(frozen=True)
class CredentialRotated:
    id: str
    name: str
    node_credential: str  # shown once ("" with dry_run)
    dry_run: bool = False


@dataclass(frozen=True)
class SandboxChanged:
    node_id: str
    node_name: str
    sandbox: str
    allowed_commands: list[str]
    revision: int
    allowed_prefixes: list[str]  # STRICT argv pins, each a shell-quoted line
    allowed_env: list[str]
    network: str  # allow | deny
    limits: dict[str, int]  # 0: the agent's own limit
    legacy_keys: ClassVar[dict[str, str]] = {"name": "node_name"}

    @classmethod
    def of(cls, change: Any) -> SandboxChanged:
        """From core's nodes.PolicyChange."""
        return cls(
            node_id=change.node_id,
            node_name=change.name,
            sandbox=change.sandbox,
            allowed_commands=list(change.allowed_commands),
            revision=change.revision,
            allowed_prefixes=list(change.allowed_prefixes),
            allowed_env=list(change.allowed_env),
            network=change.network,
            limits=dict(change.limits),
        )


@dataclass(frozen=True)
class JournalFailed:
    node_id: str
    node_name: str
    failed_tasks: int  # with dry_run: that would be failed
    dry_run: bool = False
    legacy_keys: ClassVar[dict[str, str]] = {"failed": "failed_tasks"}


@dataclass(frozen=True)
class GcReport:
    """The one shape of every `gc` command (and of the hub's maintenance job results)."""

    task: str  # locks | mirrors | invites | tasks
    dry_run: bool
    skipped: bool  # another run held the lock; nothing done
    count: int  # items removed (or that would be, with dry_run)
    items: list[Any]  # what was (or would be) removed
    files_removed: int
    bytes_removed: int
    empty_dirs: int  # folders removed (gc mirrors; 0 for the others)
    older_than_s: float | None  # the age threshold used
    _legacy: dict[str, Any] = field(default_factory=dict, compare=False)
    _extra: dict[str, Any] = field(default_factory=dict, compare=False)  # one task's own keys


@dataclass(frozen=True)
class MirrorRemoved:
    node_id: str
    reason: str
    files_removed: int
    bytes_removed: int
    legacy_keys: ClassVar[dict[str, str]] = {"files": "files_removed", "bytes": "bytes_removed"}


@dataclass(frozen=True)
class RemovedItem:
    id: str


def gc_report(task: str, result: dict[str, Any]) -> GcReport:
    """The common view of a maintenance result (the old keys kept alongside)."""
    legacy: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    empty_dirs = 0
    if task == "locks":
        items = list(result["expired"])
        files = len(result["removed_files"])
        size = sum(lease.bytes_received for lease in items)
        threshold = result.get("ttl_s")
        legacy = {key: result[key] for key in ("expired", "removed_files", "ttl_s")}
    elif task == "mirrors":
        items = [
            MirrorRemoved(
                node_id=node["node_id"],
                reason=node["reason"],
                files_removed=node["files"],
                bytes_removed=node["bytes"],
            )
            for node in result["nodes"]
        ]
        files = result["removed_files"]
        size = result["removed_bytes"]
        threshold = result.get("retention_s")
        legacy = {
            key: result[key]
            for key in ("removed_files", "removed_bytes", "nodes", "temp_files", "retention_s")
        }
        empty_dirs = result["empty_dirs"]
        if "records" in result:  # the store's file records of this host's disk
            extra["records"] = result["records"]
    else:
        items = [RemovedItem(id=item) for item in result["removed"]]
        files = size = 0
        threshold = result.get("retention_s", result.get("older_than_s"))
        legacy = {"removed": result["removed"]}
        if "expired" in result:  # gc tasks: queued tasks past their expiry, ended EXPIRED
            extra["expired"] = result["expired"]
        if "retention_s" in result:
            legacy["retention_s"] = result["retention_s"]
    return GcReport(
        task=task,
        dry_run=bool(result["dry_run"]),
        skipped=bool(result["skipped"]),
        count=len(items),
        items=items,
        files_removed=files,
        bytes_removed=size,
        empty_dirs=empty_dirs,
        older_than_s=threshold,
        _legacy=legacy,
        _extra=extra,
    )


@dataclass(frozen=True)
class ConfigWritten:
    key: str
    value: Any
    path: str
    legacy_keys: ClassVar[dict[str, str]] = {"file": "path"}


@dataclass(frozen=True)
class PathView:
    path: str


@dataclass(frozen=True)
class SchemaView:
    """`db upgrade` and `db current`."""

    current: str | None
    store_url: str
    before: str | None = None  # db upgrade only
    head: str | None = None  # db current only
    up_to_date: bool | None = None
    legacy_keys: ClassVar[dict[str, str]] = {"store": "store_url"}


@dataclass(frozen=True)
class ServePlan:
    """`serve --dry-run`: what would be served, and on which store."""

    listen: str
    tls: bool
    mutual_tls: bool
    metrics_listen: str
    store: Any  # config.StoreChoice


@dataclass(frozen=True)
class VersionView:
    version: str
    output_schema: int
    store: Any  # config.StoreChoice
    config_files: dict[str, str | None]


def version_view(version: str, settings: Settings) -> VersionView:
    return VersionView(
        version=version,
        output_schema=OUTPUT_SCHEMA_VERSION,
        store=settings.store_choice(),
        config_files={
            "user": str(settings.config_file) if settings.config_file else None,
            "system": str(settings.system_config_file) if settings.system_config_file else None,
        },
    )


# --- views of the other core modules, here so the remote CLI reads them without the store


@dataclass(frozen=True)
class NodeRevoked:
    id: str
    name: str
    revoked: bool
    failed_tasks: int
    dry_run: bool = False


@dataclass(frozen=True)
class NodeRenamed:
    id: str
    old_name: str
    name: str
    dry_run: bool = False


@dataclass(frozen=True)
class NodeDeleted:
    id: str
    name: str
    status: str
    failed_tasks: int
    deleted_tasks: int
    mirror_state: str  # removed | kept | none (and "would be removed" on a dry run)
    mirror_files: int
    mirror_bytes: int
    dry_run: bool


@dataclass(frozen=True)
class MirrorFile:
    path: str
    size: int
    mtime: datetime  # when its upload completed (the record's time)
    sha256: str
    hub_id: str  # the hub whose disk holds it
    hub_state: str  # live | dead | stopped | unknown (no such hub any more)


@dataclass(frozen=True)
class MirrorListing:
    node_id: str
    node_name: str
    files: list[MirrorFile]
    total_bytes: int


@dataclass(frozen=True)
class RemovedPath:
    path: str  # relative to the node's mirror; "" for the whole mirror
    files_removed: int
    bytes_removed: int
    # The gc vocabulary (docs/json.md); the first names are printed too for one release.
    legacy_keys: ClassVar[dict[str, str]] = {"files": "files_removed", "bytes": "bytes_removed"}


@dataclass(frozen=True)
class MirrorRemoval:
    node_id: str
    node_name: str
    items: list[RemovedPath]
    files_removed: int
    bytes_removed: int
    dry_run: bool
    # Files the records say other hubs hold (on their own disks): `mirrors rm` there.
    held_elsewhere: dict[str, int] = field(default_factory=dict)  # hub id -> files
    # The committed files removed (relative paths), whose records go with them; not shown.
    _paths: list[str] = field(default_factory=list, repr=False)
    legacy_keys: ClassVar[dict[str, str]] = {
        "removed": "items",
        "files": "files_removed",
        "bytes": "bytes_removed",
    }


@dataclass(frozen=True)
class HubView:
    id: str
    address: str
    hostname: str
    pid: int
    version: str
    epoch: int
    state: str  # live | dead (lease lapsed, not recovered) | stopped
    started_at: datetime
    lease_expires_at: datetime
    lease_remaining_s: float  # on the store's clock; negative once lapsed
    nodes_connected: int
    stopped_at: datetime | None
    recovered_by_hub_id: str | None  # the live hub that failed its tasks once it lapsed


@dataclass(frozen=True)
class AuditView:
    seq: int  # the entry's place in the log (ids elsewhere are strings)
    at: datetime
    actor: str
    actor_kind: str
    source: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AdminTokenView:
    id: str
    name: str
    role: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool
    last_used_at: datetime | None
    created_by: str
    state: str  # active | expired | revoked


@dataclass(frozen=True)
class LeaseView:
    node_id: str
    path: str
    sync_id: str
    hub_id: str
    temp_path: str
    started_at: datetime
    last_activity: datetime
    bytes_received: int
    idle_s: float
