from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SandboxMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SANDBOX_MODE_UNSPECIFIED: _ClassVar[SandboxMode]
    SANDBOX_MODE_STRICT: _ClassVar[SandboxMode]
    SANDBOX_MODE_PERMISSIVE: _ClassVar[SandboxMode]

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    PENDING: _ClassVar[TaskState]
    DISPATCHED: _ClassVar[TaskState]
    RUNNING: _ClassVar[TaskState]
    SUCCEEDED: _ClassVar[TaskState]
    FAILED: _ClassVar[TaskState]
    CANCELLED: _ClassVar[TaskState]
    TIMED_OUT: _ClassVar[TaskState]
    REJECTED: _ClassVar[TaskState]
    EXPIRED: _ClassVar[TaskState]

class OutputStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_STREAM_UNSPECIFIED: _ClassVar[OutputStream]
    OUTPUT_STREAM_STDOUT: _ClassVar[OutputStream]
    OUTPUT_STREAM_STDERR: _ClassVar[OutputStream]
SANDBOX_MODE_UNSPECIFIED: SandboxMode
SANDBOX_MODE_STRICT: SandboxMode
SANDBOX_MODE_PERMISSIVE: SandboxMode
TASK_STATE_UNSPECIFIED: TaskState
PENDING: TaskState
DISPATCHED: TaskState
RUNNING: TaskState
SUCCEEDED: TaskState
FAILED: TaskState
CANCELLED: TaskState
TIMED_OUT: TaskState
REJECTED: TaskState
EXPIRED: TaskState
OUTPUT_STREAM_UNSPECIFIED: OutputStream
OUTPUT_STREAM_STDOUT: OutputStream
OUTPUT_STREAM_STDERR: OutputStream

class SyncConfigurationRequest(_message.Message):
    __slots__ = ("invite_token", "node_credential", "hostname", "agent_version", "requested_name", "capabilities", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INVITE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    NODE_CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_NAME_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    invite_token: str
    node_credential: str
    hostname: str
    agent_version: str
    requested_name: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, invite_token: _Optional[str] = ..., node_credential: _Optional[str] = ..., hostname: _Optional[str] = ..., agent_version: _Optional[str] = ..., requested_name: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SandboxPolicy(_message.Message):
    __slots__ = ("mode", "allowed_commands", "max_runtime_s", "max_output_bytes", "revision", "allowed_env", "allowed_prefixes", "deny_network", "limits")
    MODE_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_COMMANDS_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNTIME_S_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ENV_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    DENY_NETWORK_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    mode: SandboxMode
    allowed_commands: _containers.RepeatedScalarFieldContainer[str]
    max_runtime_s: int
    max_output_bytes: int
    revision: int
    allowed_env: _containers.RepeatedScalarFieldContainer[str]
    allowed_prefixes: _containers.RepeatedCompositeFieldContainer[ArgvPrefix]
    deny_network: bool
    limits: TaskLimits
    def __init__(self, mode: _Optional[_Union[SandboxMode, str]] = ..., allowed_commands: _Optional[_Iterable[str]] = ..., max_runtime_s: _Optional[int] = ..., max_output_bytes: _Optional[int] = ..., revision: _Optional[int] = ..., allowed_env: _Optional[_Iterable[str]] = ..., allowed_prefixes: _Optional[_Iterable[_Union[ArgvPrefix, _Mapping]]] = ..., deny_network: _Optional[bool] = ..., limits: _Optional[_Union[TaskLimits, _Mapping]] = ...) -> None: ...

class ArgvPrefix(_message.Message):
    __slots__ = ("argv",)
    ARGV_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, argv: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskLimits(_message.Message):
    __slots__ = ("cpu_seconds", "address_space_bytes", "processes", "file_size_bytes", "open_files")
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_SPACE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    OPEN_FILES_FIELD_NUMBER: _ClassVar[int]
    cpu_seconds: int
    address_space_bytes: int
    processes: int
    file_size_bytes: int
    open_files: int
    def __init__(self, cpu_seconds: _Optional[int] = ..., address_space_bytes: _Optional[int] = ..., processes: _Optional[int] = ..., file_size_bytes: _Optional[int] = ..., open_files: _Optional[int] = ...) -> None: ...

class NodeConfiguration(_message.Message):
    __slots__ = ("node_id", "node_credential", "sandbox", "heartbeat_interval_ms", "max_chunk_bytes", "max_file_bytes", "hub_id", "max_message_bytes", "lost_node_grace_ms", "hub_features", "node_name")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_FILE_BYTES_FIELD_NUMBER: _ClassVar[int]
    HUB_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOST_NODE_GRACE_MS_FIELD_NUMBER: _ClassVar[int]
    HUB_FEATURES_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_credential: str
    sandbox: SandboxPolicy
    heartbeat_interval_ms: int
    max_chunk_bytes: int
    max_file_bytes: int
    hub_id: str
    max_message_bytes: int
    lost_node_grace_ms: int
    hub_features: _containers.RepeatedScalarFieldContainer[str]
    node_name: str
    def __init__(self, node_id: _Optional[str] = ..., node_credential: _Optional[str] = ..., sandbox: _Optional[_Union[SandboxPolicy, _Mapping]] = ..., heartbeat_interval_ms: _Optional[int] = ..., max_chunk_bytes: _Optional[int] = ..., max_file_bytes: _Optional[int] = ..., hub_id: _Optional[str] = ..., max_message_bytes: _Optional[int] = ..., lost_node_grace_ms: _Optional[int] = ..., hub_features: _Optional[_Iterable[str]] = ..., node_name: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("seq", "sent_unix_ms", "running_tasks", "running_task_ids")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SENT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASKS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    sent_unix_ms: int
    running_tasks: int
    running_task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, seq: _Optional[int] = ..., sent_unix_ms: _Optional[int] = ..., running_tasks: _Optional[int] = ..., running_task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class TaskUpdate(_message.Message):
    __slots__ = ("task_id", "state", "exit_code", "stdout", "stderr", "output_truncated", "error")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: TaskState
    exit_code: int
    stdout: bytes
    stderr: bytes
    output_truncated: bool
    error: str
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., exit_code: _Optional[int] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., output_truncated: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class PolicyAck(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class TaskOutput(_message.Message):
    __slots__ = ("task_id", "stream", "data", "offset")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    stream: OutputStream
    data: bytes
    offset: int
    def __init__(self, task_id: _Optional[str] = ..., stream: _Optional[_Union[OutputStream, str]] = ..., data: _Optional[bytes] = ..., offset: _Optional[int] = ...) -> None: ...

class NodeMessage(_message.Message):
    __slots__ = ("heartbeat", "task_update", "policy_ack", "task_output")
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    TASK_UPDATE_FIELD_NUMBER: _ClassVar[int]
    POLICY_ACK_FIELD_NUMBER: _ClassVar[int]
    TASK_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    heartbeat: Heartbeat
    task_update: TaskUpdate
    policy_ack: PolicyAck
    task_output: TaskOutput
    def __init__(self, heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., task_update: _Optional[_Union[TaskUpdate, _Mapping]] = ..., policy_ack: _Optional[_Union[PolicyAck, _Mapping]] = ..., task_output: _Optional[_Union[TaskOutput, _Mapping]] = ...) -> None: ...

class HeartbeatAck(_message.Message):
    __slots__ = ("seq", "hub_unix_ms")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HUB_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    hub_unix_ms: int
    def __init__(self, seq: _Optional[int] = ..., hub_unix_ms: _Optional[int] = ...) -> None: ...

class TaskAssignment(_message.Message):
    __slots__ = ("task_id", "argv", "script", "timeout_s", "env", "cwd")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    script: str
    timeout_s: int
    env: _containers.ScalarMap[str, str]
    cwd: str
    def __init__(self, task_id: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., script: _Optional[str] = ..., timeout_s: _Optional[int] = ..., env: _Optional[_Mapping[str, str]] = ..., cwd: _Optional[str] = ...) -> None: ...

class CancelTask(_message.Message):
    __slots__ = ("task_id", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TaskUpdateAck(_message.Message):
    __slots__ = ("task_id", "state", "accepted", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: TaskState
    accepted: bool
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class HubMessage(_message.Message):
    __slots__ = ("policy", "heartbeat_ack", "assign", "cancel", "task_update_ack")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACK_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    TASK_UPDATE_ACK_FIELD_NUMBER: _ClassVar[int]
    policy: SandboxPolicy
    heartbeat_ack: HeartbeatAck
    assign: TaskAssignment
    cancel: CancelTask
    task_update_ack: TaskUpdateAck
    def __init__(self, policy: _Optional[_Union[SandboxPolicy, _Mapping]] = ..., heartbeat_ack: _Optional[_Union[HeartbeatAck, _Mapping]] = ..., assign: _Optional[_Union[TaskAssignment, _Mapping]] = ..., cancel: _Optional[_Union[CancelTask, _Mapping]] = ..., task_update_ack: _Optional[_Union[TaskUpdateAck, _Mapping]] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("path", "offset", "data", "is_final", "sha256", "total_size", "mode")
    PATH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    IS_FINAL_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    path: str
    offset: int
    data: bytes
    is_final: bool
    sha256: str
    total_size: int
    mode: int
    def __init__(self, path: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., is_final: _Optional[bool] = ..., sha256: _Optional[str] = ..., total_size: _Optional[int] = ..., mode: _Optional[int] = ...) -> None: ...

class FileSyncResult(_message.Message):
    __slots__ = ("path", "size", "sha256")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    sha256: str
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...
