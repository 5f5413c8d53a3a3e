from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Invite(_message.Message):
    __slots__ = ("id", "created_unix_ms", "expires_unix_ms", "uses_allowed", "uses_count", "revoked", "labels", "sandbox", "state", "note", "name", "name_prefix", "json")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    USES_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    USES_COUNT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    created_unix_ms: int
    expires_unix_ms: int
    uses_allowed: int
    uses_count: int
    revoked: bool
    labels: _containers.ScalarMap[str, str]
    sandbox: str
    state: str
    note: str
    name: str
    name_prefix: str
    json: str
    def __init__(self, id: _Optional[str] = ..., created_unix_ms: _Optional[int] = ..., expires_unix_ms: _Optional[int] = ..., uses_allowed: _Optional[int] = ..., uses_count: _Optional[int] = ..., revoked: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., sandbox: _Optional[str] = ..., state: _Optional[str] = ..., note: _Optional[str] = ..., name: _Optional[str] = ..., name_prefix: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class CreateInviteRequest(_message.Message):
    __slots__ = ("ttl_ms", "uses", "labels", "sandbox", "note", "name", "name_prefix")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    ttl_ms: int
    uses: int
    labels: _containers.ScalarMap[str, str]
    sandbox: str
    note: str
    name: str
    name_prefix: str
    def __init__(self, ttl_ms: _Optional[int] = ..., uses: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., sandbox: _Optional[str] = ..., note: _Optional[str] = ..., name: _Optional[str] = ..., name_prefix: _Optional[str] = ...) -> None: ...

class CreateInviteResponse(_message.Message):
    __slots__ = ("invite", "token")
    INVITE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    invite: Invite
    token: str
    def __init__(self, invite: _Optional[_Union[Invite, _Mapping]] = ..., token: _Optional[str] = ...) -> None: ...

class ListInvitesRequest(_message.Message):
    __slots__ = ("include_inactive",)
    INCLUDE_INACTIVE_FIELD_NUMBER: _ClassVar[int]
    include_inactive: bool
    def __init__(self, include_inactive: _Optional[bool] = ...) -> None: ...

class ListInvitesResponse(_message.Message):
    __slots__ = ("invites",)
    INVITES_FIELD_NUMBER: _ClassVar[int]
    invites: _containers.RepeatedCompositeFieldContainer[Invite]
    def __init__(self, invites: _Optional[_Iterable[_Union[Invite, _Mapping]]] = ...) -> None: ...

class RevokeInviteRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("id", "name", "hostname", "online", "status", "sandbox", "sandbox_configured", "allowed_commands", "policy_revision", "policy_acked", "labels", "agent_version", "hub_id", "last_heartbeat_unix_ms", "created_unix_ms", "revoked", "running_tasks", "cordoned", "json")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_COMMANDS_FIELD_NUMBER: _ClassVar[int]
    POLICY_REVISION_FIELD_NUMBER: _ClassVar[int]
    POLICY_ACKED_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    HUB_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASKS_FIELD_NUMBER: _ClassVar[int]
    CORDONED_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    hostname: str
    online: bool
    status: str
    sandbox: str
    sandbox_configured: bool
    allowed_commands: _containers.RepeatedScalarFieldContainer[str]
    policy_revision: int
    policy_acked: int
    labels: _containers.ScalarMap[str, str]
    agent_version: str
    hub_id: str
    last_heartbeat_unix_ms: int
    created_unix_ms: int
    revoked: bool
    running_tasks: int
    cordoned: bool
    json: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., hostname: _Optional[str] = ..., online: _Optional[bool] = ..., status: _Optional[str] = ..., sandbox: _Optional[str] = ..., sandbox_configured: _Optional[bool] = ..., allowed_commands: _Optional[_Iterable[str]] = ..., policy_revision: _Optional[int] = ..., policy_acked: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., agent_version: _Optional[str] = ..., hub_id: _Optional[str] = ..., last_heartbeat_unix_ms: _Optional[int] = ..., created_unix_ms: _Optional[int] = ..., revoked: _Optional[bool] = ..., running_tasks: _Optional[int] = ..., cordoned: _Optional[bool] = ..., json: _Optional[str] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("selector", "include_revoked")
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_REVOKED_FIELD_NUMBER: _ClassVar[int]
    selector: str
    include_revoked: bool
    def __init__(self, selector: _Optional[str] = ..., include_revoked: _Optional[bool] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class ShowNodeRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: str
    def __init__(self, node: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "node_id", "node_name", "state", "argv", "script", "cwd", "timeout_s", "has_exit_code", "exit_code", "stdout", "stderr", "output_truncated", "error", "created_unix_ms", "dispatched_unix_ms", "started_unix_ms", "finished_unix_ms", "hub_id", "expires_unix_ms", "terminal", "json")
    ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    HAS_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    DISPATCHED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    HUB_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    node_id: str
    node_name: str
    state: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    script: str
    cwd: str
    timeout_s: int
    has_exit_code: bool
    exit_code: int
    stdout: bytes
    stderr: bytes
    output_truncated: bool
    error: str
    created_unix_ms: int
    dispatched_unix_ms: int
    started_unix_ms: int
    finished_unix_ms: int
    hub_id: str
    expires_unix_ms: int
    terminal: bool
    json: str
    def __init__(self, id: _Optional[str] = ..., node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., state: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., script: _Optional[str] = ..., cwd: _Optional[str] = ..., timeout_s: _Optional[int] = ..., has_exit_code: _Optional[bool] = ..., exit_code: _Optional[int] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., output_truncated: _Optional[bool] = ..., error: _Optional[str] = ..., created_unix_ms: _Optional[int] = ..., dispatched_unix_ms: _Optional[int] = ..., started_unix_ms: _Optional[int] = ..., finished_unix_ms: _Optional[int] = ..., hub_id: _Optional[str] = ..., expires_unix_ms: _Optional[int] = ..., terminal: _Optional[bool] = ..., json: _Optional[str] = ...) -> None: ...

class SubmitTaskRequest(_message.Message):
    __slots__ = ("node", "selector", "argv", "script", "timeout_s", "env", "cwd", "expire_after_ms", "request_id")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    node: str
    selector: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    script: str
    timeout_s: int
    env: _containers.ScalarMap[str, str]
    cwd: str
    expire_after_ms: int
    request_id: str
    def __init__(self, node: _Optional[str] = ..., selector: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., script: _Optional[str] = ..., timeout_s: _Optional[int] = ..., env: _Optional[_Mapping[str, str]] = ..., cwd: _Optional[str] = ..., expire_after_ms: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmittedTask(_message.Message):
    __slots__ = ("id", "state", "node_id", "node_name", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: str
    node_id: str
    node_name: str
    error: str
    def __init__(self, id: _Optional[str] = ..., state: _Optional[str] = ..., node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class SubmitTaskResponse(_message.Message):
    __slots__ = ("tasks", "replayed", "not_connected")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    NOT_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[SubmittedTask]
    replayed: bool
    not_connected: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tasks: _Optional[_Iterable[_Union[SubmittedTask, _Mapping]]] = ..., replayed: _Optional[bool] = ..., not_connected: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("node", "selector", "states", "limit")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    node: str
    selector: str
    states: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    def __init__(self, node: _Optional[str] = ..., selector: _Optional[str] = ..., states: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class ShowTaskRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("id", "reason", "dry_run")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    dry_run: bool
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class WaitTaskRequest(_message.Message):
    __slots__ = ("id", "timeout_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    timeout_ms: int
    def __init__(self, id: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class WaitTaskResponse(_message.Message):
    __slots__ = ("task", "ended")
    TASK_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    task: Task
    ended: bool
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., ended: _Optional[bool] = ...) -> None: ...

class WatchTaskRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class TaskUpdate(_message.Message):
    __slots__ = ("task", "stdout_chunk", "stderr_chunk")
    TASK_FIELD_NUMBER: _ClassVar[int]
    STDOUT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    STDERR_CHUNK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    stdout_chunk: bytes
    stderr_chunk: bytes
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., stdout_chunk: _Optional[bytes] = ..., stderr_chunk: _Optional[bytes] = ...) -> None: ...

class MeshStatusRequest(_message.Message):
    __slots__ = ("with_jobs",)
    WITH_JOBS_FIELD_NUMBER: _ClassVar[int]
    with_jobs: bool
    def __init__(self, with_jobs: _Optional[bool] = ...) -> None: ...

class NodeCounts(_message.Message):
    __slots__ = ("total", "online", "stale", "offline", "revoked")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    total: int
    online: int
    stale: int
    offline: int
    revoked: int
    def __init__(self, total: _Optional[int] = ..., online: _Optional[int] = ..., stale: _Optional[int] = ..., offline: _Optional[int] = ..., revoked: _Optional[int] = ...) -> None: ...

class MeshStatusResponse(_message.Message):
    __slots__ = ("nodes", "tasks_running", "tasks_pending", "hubs", "hub_id", "connected_streams", "json")
    NODES_FIELD_NUMBER: _ClassVar[int]
    TASKS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    TASKS_PENDING_FIELD_NUMBER: _ClassVar[int]
    HUBS_FIELD_NUMBER: _ClassVar[int]
    HUB_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_STREAMS_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    nodes: NodeCounts
    tasks_running: int
    tasks_pending: int
    hubs: _containers.RepeatedScalarFieldContainer[str]
    hub_id: str
    connected_streams: int
    json: str
    def __init__(self, nodes: _Optional[_Union[NodeCounts, _Mapping]] = ..., tasks_running: _Optional[int] = ..., tasks_pending: _Optional[int] = ..., hubs: _Optional[_Iterable[str]] = ..., hub_id: _Optional[str] = ..., connected_streams: _Optional[int] = ..., json: _Optional[str] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("interval_ms",)
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    interval_ms: int
    def __init__(self, interval_ms: _Optional[int] = ...) -> None: ...

class MeshEvent(_message.Message):
    __slots__ = ("event", "ts_unix_ms", "node_id", "name", "status", "previous", "task_id", "state", "audit", "json")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TS_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    event: str
    ts_unix_ms: int
    node_id: str
    name: str
    status: str
    previous: str
    task_id: str
    state: str
    audit: AuditEntry
    json: str
    def __init__(self, event: _Optional[str] = ..., ts_unix_ms: _Optional[int] = ..., node_id: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[str] = ..., previous: _Optional[str] = ..., task_id: _Optional[str] = ..., state: _Optional[str] = ..., audit: _Optional[_Union[AuditEntry, _Mapping]] = ..., json: _Optional[str] = ...) -> None: ...

class SetSandboxRequest(_message.Message):
    __slots__ = ("nodes", "all", "selector", "include_self_reported", "mode", "set_allowed_commands", "allowed_commands", "add_env", "clear_env", "network", "limits", "reset_limits", "dry_run")
    class LimitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODES_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SELF_REPORTED_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SET_ALLOWED_COMMANDS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_COMMANDS_FIELD_NUMBER: _ClassVar[int]
    ADD_ENV_FIELD_NUMBER: _ClassVar[int]
    CLEAR_ENV_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    RESET_LIMITS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    selector: str
    include_self_reported: bool
    mode: str
    set_allowed_commands: bool
    allowed_commands: _containers.RepeatedScalarFieldContainer[str]
    add_env: _containers.RepeatedScalarFieldContainer[str]
    clear_env: bool
    network: str
    limits: _containers.ScalarMap[str, int]
    reset_limits: bool
    dry_run: bool
    def __init__(self, nodes: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ..., selector: _Optional[str] = ..., include_self_reported: _Optional[bool] = ..., mode: _Optional[str] = ..., set_allowed_commands: _Optional[bool] = ..., allowed_commands: _Optional[_Iterable[str]] = ..., add_env: _Optional[_Iterable[str]] = ..., clear_env: _Optional[bool] = ..., network: _Optional[str] = ..., limits: _Optional[_Mapping[str, int]] = ..., reset_limits: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class SandboxChange(_message.Message):
    __slots__ = ("node_id", "name", "sandbox", "allowed_commands", "allowed_prefixes", "allowed_env", "network", "revision", "limits")
    class LimitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_COMMANDS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ENV_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    sandbox: str
    allowed_commands: _containers.RepeatedScalarFieldContainer[str]
    allowed_prefixes: _containers.RepeatedScalarFieldContainer[str]
    allowed_env: _containers.RepeatedScalarFieldContainer[str]
    network: str
    revision: int
    limits: _containers.ScalarMap[str, int]
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., sandbox: _Optional[str] = ..., allowed_commands: _Optional[_Iterable[str]] = ..., allowed_prefixes: _Optional[_Iterable[str]] = ..., allowed_env: _Optional[_Iterable[str]] = ..., network: _Optional[str] = ..., revision: _Optional[int] = ..., limits: _Optional[_Mapping[str, int]] = ...) -> None: ...

class SetSandboxResponse(_message.Message):
    __slots__ = ("changes", "json")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[SandboxChange]
    json: str
    def __init__(self, changes: _Optional[_Iterable[_Union[SandboxChange, _Mapping]]] = ..., json: _Optional[str] = ...) -> None: ...

class SetQuotaRequest(_message.Message):
    __slots__ = ("node", "quota_bytes", "quota_files", "clear")
    NODE_FIELD_NUMBER: _ClassVar[int]
    QUOTA_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUOTA_FILES_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    node: str
    quota_bytes: int
    quota_files: int
    clear: bool
    def __init__(self, node: _Optional[str] = ..., quota_bytes: _Optional[int] = ..., quota_files: _Optional[int] = ..., clear: _Optional[bool] = ...) -> None: ...

class QuotaUsage(_message.Message):
    __slots__ = ("node_id", "node_name", "quota_bytes", "quota_files", "quota_configured", "used_bytes", "used_files", "json")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    QUOTA_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUOTA_FILES_FIELD_NUMBER: _ClassVar[int]
    QUOTA_CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_FILES_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_name: str
    quota_bytes: int
    quota_files: int
    quota_configured: bool
    used_bytes: int
    used_files: int
    json: str
    def __init__(self, node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., quota_bytes: _Optional[int] = ..., quota_files: _Optional[int] = ..., quota_configured: _Optional[bool] = ..., used_bytes: _Optional[int] = ..., used_files: _Optional[int] = ..., json: _Optional[str] = ...) -> None: ...

class RevokeNodeRequest(_message.Message):
    __slots__ = ("nodes", "selector", "include_self_reported", "dry_run")
    NODES_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SELF_REPORTED_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    selector: str
    include_self_reported: bool
    dry_run: bool
    def __init__(self, nodes: _Optional[_Iterable[str]] = ..., selector: _Optional[str] = ..., include_self_reported: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class RevokedNode(_message.Message):
    __slots__ = ("id", "name", "revoked", "failed_tasks", "dry_run")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    FAILED_TASKS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    revoked: bool
    failed_tasks: int
    dry_run: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., revoked: _Optional[bool] = ..., failed_tasks: _Optional[int] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class RevokeNodeResponse(_message.Message):
    __slots__ = ("nodes", "json")
    NODES_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[RevokedNode]
    json: str
    def __init__(self, nodes: _Optional[_Iterable[_Union[RevokedNode, _Mapping]]] = ..., json: _Optional[str] = ...) -> None: ...

class RotateCredentialRequest(_message.Message):
    __slots__ = ("node", "dry_run")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    node: str
    dry_run: bool
    def __init__(self, node: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class CredentialRotated(_message.Message):
    __slots__ = ("id", "name", "node_credential", "dry_run")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    node_credential: str
    dry_run: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., node_credential: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class RenameNodeRequest(_message.Message):
    __slots__ = ("node", "new_name", "dry_run")
    NODE_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    node: str
    new_name: str
    dry_run: bool
    def __init__(self, node: _Optional[str] = ..., new_name: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class NodeRenamed(_message.Message):
    __slots__ = ("id", "old_name", "name", "dry_run")
    ID_FIELD_NUMBER: _ClassVar[int]
    OLD_NAME_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    id: str
    old_name: str
    name: str
    dry_run: bool
    def __init__(self, id: _Optional[str] = ..., old_name: _Optional[str] = ..., name: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class DeleteNodeRequest(_message.Message):
    __slots__ = ("node", "keep_mirror", "dry_run")
    NODE_FIELD_NUMBER: _ClassVar[int]
    KEEP_MIRROR_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    node: str
    keep_mirror: bool
    dry_run: bool
    def __init__(self, node: _Optional[str] = ..., keep_mirror: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class NodeDeleted(_message.Message):
    __slots__ = ("id", "name", "status", "failed_tasks", "deleted_tasks", "mirror_state", "mirror_files", "mirror_bytes", "dry_run", "json")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FAILED_TASKS_FIELD_NUMBER: _ClassVar[int]
    DELETED_TASKS_FIELD_NUMBER: _ClassVar[int]
    MIRROR_STATE_FIELD_NUMBER: _ClassVar[int]
    MIRROR_FILES_FIELD_NUMBER: _ClassVar[int]
    MIRROR_BYTES_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    status: str
    failed_tasks: int
    deleted_tasks: int
    mirror_state: str
    mirror_files: int
    mirror_bytes: int
    dry_run: bool
    json: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., status: _Optional[str] = ..., failed_tasks: _Optional[int] = ..., deleted_tasks: _Optional[int] = ..., mirror_state: _Optional[str] = ..., mirror_files: _Optional[int] = ..., mirror_bytes: _Optional[int] = ..., dry_run: _Optional[bool] = ..., json: _Optional[str] = ...) -> None: ...

class CordonNodeRequest(_message.Message):
    __slots__ = ("node", "cordoned", "dry_run")
    NODE_FIELD_NUMBER: _ClassVar[int]
    CORDONED_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    node: str
    cordoned: bool
    dry_run: bool
    def __init__(self, node: _Optional[str] = ..., cordoned: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class NodeCordon(_message.Message):
    __slots__ = ("id", "name", "cordoned", "dry_run")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CORDONED_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    cordoned: bool
    dry_run: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., cordoned: _Optional[bool] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class DrainNodeRequest(_message.Message):
    __slots__ = ("node", "timeout_ms")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    node: str
    timeout_ms: int
    def __init__(self, node: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class DrainNodeResponse(_message.Message):
    __slots__ = ("node", "drained", "running_tasks", "running_count")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASKS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_COUNT_FIELD_NUMBER: _ClassVar[int]
    node: NodeCordon
    drained: bool
    running_tasks: _containers.RepeatedScalarFieldContainer[str]
    running_count: int
    def __init__(self, node: _Optional[_Union[NodeCordon, _Mapping]] = ..., drained: _Optional[bool] = ..., running_tasks: _Optional[_Iterable[str]] = ..., running_count: _Optional[int] = ...) -> None: ...

class FailNodeTasksRequest(_message.Message):
    __slots__ = ("node", "reason", "dry_run")
    NODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    node: str
    reason: str
    dry_run: bool
    def __init__(self, node: _Optional[str] = ..., reason: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class JournalFailed(_message.Message):
    __slots__ = ("node_id", "node_name", "failed_tasks", "dry_run")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    FAILED_TASKS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_name: str
    failed_tasks: int
    dry_run: bool
    def __init__(self, node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., failed_tasks: _Optional[int] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class RunGcRequest(_message.Message):
    __slots__ = ("kind", "dry_run", "older_than_ms")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    OLDER_THAN_MS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    dry_run: bool
    older_than_ms: int
    def __init__(self, kind: _Optional[str] = ..., dry_run: _Optional[bool] = ..., older_than_ms: _Optional[int] = ...) -> None: ...

class GcResponse(_message.Message):
    __slots__ = ("kind", "dry_run", "skipped", "count", "files_removed", "bytes_removed", "json", "result_json")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    FILES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    dry_run: bool
    skipped: bool
    count: int
    files_removed: int
    bytes_removed: int
    json: str
    result_json: str
    def __init__(self, kind: _Optional[str] = ..., dry_run: _Optional[bool] = ..., skipped: _Optional[bool] = ..., count: _Optional[int] = ..., files_removed: _Optional[int] = ..., bytes_removed: _Optional[int] = ..., json: _Optional[str] = ..., result_json: _Optional[str] = ...) -> None: ...

class ListMirrorsRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: str
    def __init__(self, node: _Optional[str] = ...) -> None: ...

class MirrorFile(_message.Message):
    __slots__ = ("path", "size", "mtime_unix_ms", "sha256", "hub_id", "hub_state")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MTIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    HUB_ID_FIELD_NUMBER: _ClassVar[int]
    HUB_STATE_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    mtime_unix_ms: int
    sha256: str
    hub_id: str
    hub_state: str
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., mtime_unix_ms: _Optional[int] = ..., sha256: _Optional[str] = ..., hub_id: _Optional[str] = ..., hub_state: _Optional[str] = ...) -> None: ...

class MirrorListing(_message.Message):
    __slots__ = ("node_id", "node_name", "files", "total_bytes", "json")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_name: str
    files: _containers.RepeatedCompositeFieldContainer[MirrorFile]
    total_bytes: int
    json: str
    def __init__(self, node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., files: _Optional[_Iterable[_Union[MirrorFile, _Mapping]]] = ..., total_bytes: _Optional[int] = ..., json: _Optional[str] = ...) -> None: ...

class RemoveMirrorFilesRequest(_message.Message):
    __slots__ = ("node", "paths", "dry_run")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    node: str
    paths: _containers.RepeatedScalarFieldContainer[str]
    dry_run: bool
    def __init__(self, node: _Optional[str] = ..., paths: _Optional[_Iterable[str]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class RemovedPath(_message.Message):
    __slots__ = ("path", "files_removed", "bytes_removed")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FILES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    path: str
    files_removed: int
    bytes_removed: int
    def __init__(self, path: _Optional[str] = ..., files_removed: _Optional[int] = ..., bytes_removed: _Optional[int] = ...) -> None: ...

class MirrorRemoval(_message.Message):
    __slots__ = ("node_id", "node_name", "items", "files_removed", "bytes_removed", "dry_run", "json")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    FILES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    BYTES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_name: str
    items: _containers.RepeatedCompositeFieldContainer[RemovedPath]
    files_removed: int
    bytes_removed: int
    dry_run: bool
    json: str
    def __init__(self, node_id: _Optional[str] = ..., node_name: _Optional[str] = ..., items: _Optional[_Iterable[_Union[RemovedPath, _Mapping]]] = ..., files_removed: _Optional[int] = ..., bytes_removed: _Optional[int] = ..., dry_run: _Optional[bool] = ..., json: _Optional[str] = ...) -> None: ...

class DownloadMirrorFileRequest(_message.Message):
    __slots__ = ("node", "path")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    node: str
    path: str
    def __init__(self, node: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class MirrorChunk(_message.Message):
    __slots__ = ("data", "offset", "size", "mtime_unix_ms")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MTIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    size: int
    mtime_unix_ms: int
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., size: _Optional[int] = ..., mtime_unix_ms: _Optional[int] = ...) -> None: ...

class ListHubsRequest(_message.Message):
    __slots__ = ("include_stopped",)
    INCLUDE_STOPPED_FIELD_NUMBER: _ClassVar[int]
    include_stopped: bool
    def __init__(self, include_stopped: _Optional[bool] = ...) -> None: ...

class HubInfo(_message.Message):
    __slots__ = ("id", "address", "hostname", "pid", "version", "epoch", "state", "started_unix_ms", "lease_expires_unix_ms", "lease_remaining_s", "nodes_connected", "stopped_unix_ms", "recovered_by_hub_id", "json")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LEASE_REMAINING_S_FIELD_NUMBER: _ClassVar[int]
    NODES_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    STOPPED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    RECOVERED_BY_HUB_ID_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    hostname: str
    pid: int
    version: str
    epoch: int
    state: str
    started_unix_ms: int
    lease_expires_unix_ms: int
    lease_remaining_s: float
    nodes_connected: int
    stopped_unix_ms: int
    recovered_by_hub_id: str
    json: str
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., hostname: _Optional[str] = ..., pid: _Optional[int] = ..., version: _Optional[str] = ..., epoch: _Optional[int] = ..., state: _Optional[str] = ..., started_unix_ms: _Optional[int] = ..., lease_expires_unix_ms: _Optional[int] = ..., lease_remaining_s: _Optional[float] = ..., nodes_connected: _Optional[int] = ..., stopped_unix_ms: _Optional[int] = ..., recovered_by_hub_id: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class ListHubsResponse(_message.Message):
    __slots__ = ("hubs",)
    HUBS_FIELD_NUMBER: _ClassVar[int]
    hubs: _containers.RepeatedCompositeFieldContainer[HubInfo]
    def __init__(self, hubs: _Optional[_Iterable[_Union[HubInfo, _Mapping]]] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("since_unix_ms", "actor", "limit")
    SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    since_unix_ms: int
    actor: str
    limit: int
    def __init__(self, since_unix_ms: _Optional[int] = ..., actor: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("seq", "at_unix_ms", "actor", "actor_kind", "source", "action", "target", "outcome", "detail_json", "json")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTOR_KIND_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at_unix_ms: int
    actor: str
    actor_kind: str
    source: str
    action: str
    target: str
    outcome: str
    detail_json: str
    json: str
    def __init__(self, seq: _Optional[int] = ..., at_unix_ms: _Optional[int] = ..., actor: _Optional[str] = ..., actor_kind: _Optional[str] = ..., source: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., outcome: _Optional[str] = ..., detail_json: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class AdminToken(_message.Message):
    __slots__ = ("id", "name", "role", "created_unix_ms", "expires_unix_ms", "revoked", "last_used_unix_ms", "created_by", "state", "json")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    role: str
    created_unix_ms: int
    expires_unix_ms: int
    revoked: bool
    last_used_unix_ms: int
    created_by: str
    state: str
    json: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[str] = ..., created_unix_ms: _Optional[int] = ..., expires_unix_ms: _Optional[int] = ..., revoked: _Optional[bool] = ..., last_used_unix_ms: _Optional[int] = ..., created_by: _Optional[str] = ..., state: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class CreateAdminTokenRequest(_message.Message):
    __slots__ = ("name", "role", "ttl_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    ttl_ms: int
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class CreateAdminTokenResponse(_message.Message):
    __slots__ = ("admin_token", "token")
    ADMIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    admin_token: AdminToken
    token: str
    def __init__(self, admin_token: _Optional[_Union[AdminToken, _Mapping]] = ..., token: _Optional[str] = ...) -> None: ...

class ListAdminTokensRequest(_message.Message):
    __slots__ = ("include_inactive",)
    INCLUDE_INACTIVE_FIELD_NUMBER: _ClassVar[int]
    include_inactive: bool
    def __init__(self, include_inactive: _Optional[bool] = ...) -> None: ...

class ListAdminTokensResponse(_message.Message):
    __slots__ = ("admin_tokens",)
    ADMIN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    admin_tokens: _containers.RepeatedCompositeFieldContainer[AdminToken]
    def __init__(self, admin_tokens: _Optional[_Iterable[_Union[AdminToken, _Mapping]]] = ...) -> None: ...

class RevokeAdminTokenRequest(_message.Message):
    __slots__ = ("ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    ref: str
    def __init__(self, ref: _Optional[str] = ...) -> None: ...
