"""Settings: default < system config < user config < ``CORTEX_*`` environment < flag.

Config files are TOML (read and written with tomlkit so ``config set`` keeps comments and
order). The system file ``/etc/cortexctl/config.toml`` (``CORTEX_SYSTEM_CONFIG`` moves it)
is merged below the user's file key by key; the user's file is ``--config`` /
``CORTEX_CONFIG``, else ``config.toml`` in the platformdirs user config dir. Each value
keeps the layer (and file) it came from, so ``config show`` can say why.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, cast, overload

import platformdirs

from cortexctl.errors import ConfigError, CortexError, InvalidArgument, NotFound
from cortexctl.redaction import redact_url
from cortexctl.units import parse_bytes, parse_duration

APP_NAME = "cortexctl"
SYSTEM_CONFIG = Path("/etc/cortexctl/config.toml")
SYSTEM_CONFIG_VAR = "CORTEX_SYSTEM_CONFIG"
# Where a hub run by systemd keeps its store (StateDirectory=cortexctl); the system config
# shipped in contrib/ points store.data_dir here so operators and cron find it too.
SYSTEM_DATA_DIR = Path("/var/lib/cortexctl")


def _parse_str(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"expected a string, got {value!r}")
    return value


def _parse_int(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidArgument(f"expected a whole number, got {value!r}") from None
    if number < 0:
        raise InvalidArgument(f"must not be negative, got {value!r}")
    return number


def _parse_positive_int(value: Any) -> int:
    number = _parse_int(value)
    if number < 1:
        raise InvalidArgument(f"must be at least 1, got {value!r}")
    return number


def _parse_interval(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise InvalidArgument(f"must be longer than 0s, got {value!r}")
    return seconds


def _parse_positive_bytes(value: Any) -> int:
    size = parse_bytes(value)
    if size < 1:
        raise InvalidArgument(f"must be at least 1 byte, got {value!r}")
    return size


def _parse_address(value: Any) -> str:
    from cortexctl.addresses import split_address

    text = _parse_str(value)
    split_address(text)
    return text


def _parse_optional_address(value: Any) -> str:
    text = _parse_str(value)
    return _parse_address(text) if text else text


def _parse_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise InvalidArgument(f"expected a list of strings, got {value!r}")


def _parse_cert_roles(value: Any) -> tuple[str, ...]:
    from cortexctl.core.roles import parse_cert_roles

    entries = _parse_list(value)
    parse_cert_roles(entries)
    return entries


def _parse_reserve(value: Any) -> str:
    from cortexctl.core.diskspace import parse_reserve

    return parse_reserve(value)


def _parse_choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).lower()
        if text not in choices:
            raise InvalidArgument(f"expected one of {', '.join(choices)}, got {value!r}")
        return text

    return parse


@dataclass(frozen=True)
class Setting:
    key: str  # "section.name" in the config file
    default: Any
    parse: Callable[[Any], Any]
    help: str
    env: str = ""

    @property
    def env_var(self) -> str:
        return self.env or "CORTEX_" + self.key.split(".", 1)[1].upper()


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "store.data_dir",
        "",
        _parse_str,
        "Directory for the SQLite store and the mirrors (default: platformdirs user data dir).",
        env="CORTEX_DATA_DIR",
    ),
    Setting(
        "store.database_url",
        "",
        _parse_str,
        "SQLAlchemy URL of the store, e.g. postgresql+psycopg://user@host/db "
        "(default: SQLite in the data dir).",
        env="CORTEX_DATABASE_URL",
    ),
    Setting(
        "store.group",
        "",
        _parse_str,
        "Group that shares the data dir and store (folders 02770, files 0660); empty: "
        "private to the hub's user (0700/0600).",
        env="CORTEX_STORE_GROUP",
    ),
    Setting(
        "store.workers", 8, _parse_positive_int, "Threads that run store and file work for the hub."
    ),
    Setting(
        "store.idle_in_transaction_timeout",
        0.0,
        parse_duration,
        "PostgreSQL ends a hub's session that sits this long inside a transaction (a frozen "
        "or partitioned hub), so it cannot hold row locks a survivor needs; 0: hub.lease.",
    ),
    Setting(
        "store.disk_ballast",
        8 * 1024 * 1024,
        parse_bytes,
        "Room kept for a SQLite store on a full disk: a file this size beside the store, "
        "removed when the store finds its disk full (so presence, the hub's lease and "
        "results are still written) and put back once that much is free above "
        "sync.free_space_reserve; 0: none.",
        env="CORTEX_DISK_BALLAST",
    ),
    Setting(
        "hub.listen",
        "127.0.0.1:50051",
        _parse_address,
        "Address the hub listens on.",
        env="CORTEX_LISTEN",
    ),
    Setting(
        "hub.heartbeat_interval",
        5.0,
        _parse_interval,
        "How often nodes send heartbeats; a stream silent for 3 intervals is closed.",
    ),
    Setting(
        "hub.lost_node_grace",
        0.0,
        parse_duration,
        "How long a node whose stream ended may take to come back (to any hub) before its "
        "dispatched and running tasks are failed; 0 means two heartbeat intervals.",
    ),
    Setting(
        "hub.drain_timeout",
        10.0,
        parse_duration,
        "On SIGTERM, how long running tasks may finish before they are failed.",
    ),
    Setting(
        "hub.handshake_deadline",
        2.0,
        _parse_interval,
        "How long a handshake may wait for the store before answering UNAVAILABLE.",
    ),
    Setting(
        "hub.poll_interval",
        0.5,
        _parse_interval,
        "How often the hub looks for changes made by the CLI (tasks, policies, revocations) "
        "if no wake-up came (PostgreSQL NOTIFY, SQLite data_version): the safety net.",
    ),
    Setting(
        "hub.auth_failure_limit",
        20,
        _parse_int,
        "Failed handshakes allowed per minute for one invite or credential from one address "
        "before RESOURCE_EXHAUSTED (10x that from all addresses; malformed tokens share a "
        "hub-wide budget of 50x).",
    ),
    Setting(
        "hub.max_connections",
        0,
        _parse_int,
        "Incoming connections the hub accepts at once; 0: sized from the open-file limit "
        "(which the hub raises to its hard limit at start), leaving room for store and files.",
    ),
    Setting(
        "hub.handshake_timeout",
        10.0,
        parse_duration,
        "A connection that has not finished its TLS/HTTP/2 handshake by then is closed.",
    ),
    Setting(
        "hub.idle_timeout",
        60.0,
        parse_duration,
        "A connection without any call (RPC or stream) for this long is closed.",
    ),
    Setting(
        "hub.admin_cert_roles",
        (),
        _parse_cert_roles,
        "Admin API roles of mTLS client certificates, as SUBJECT=ROLE entries: a client "
        "whose verified certificate has that common name (and no admin token) gets that "
        "role ('ops-laptop=operator'); needs serve --tls-client-ca.",
        env="CORTEX_ADMIN_CERT_ROLES",
    ),
    Setting(
        "hub.lease",
        15.0,
        parse_duration,
        "The hub's membership lease, renewed every third of it; a hub that misses it is "
        "taken for dead and a live hub fails its in-flight tasks (judged on the store's clock).",
    ),
    Setting(
        "hub.task_expiry",
        0.0,
        parse_duration,
        "Expiry of tasks submitted without --expire-after: queued longer, they end EXPIRED "
        "(0: never).",
    ),
    Setting(
        "jobs.status_file_interval",
        5.0,
        _parse_interval,
        "How often `serve --status-file` rewrites the status file.",
    ),
    Setting(
        "sandbox.default_mode",
        "strict",
        _parse_choice("strict", "permissive"),
        "Sandbox mode of nodes that have none of their own.",
    ),
    Setting(
        "sandbox.default_allowed_commands",
        (),
        _parse_list,
        "Commands a STRICT node may run when it has no allow-list of its own; an entry with "
        "spaces pins arguments ('git status').",
    ),
    Setting(
        "sandbox.allowed_env",
        (),
        _parse_list,
        "Environment variable names a task may set on every STRICT node, besides the node's "
        "own `--allow-env` names (any other name is refused).",
    ),
    Setting(
        "sandbox.network",
        "allow",
        _parse_choice("allow", "deny"),
        "Network of tasks on nodes with no setting of their own (deny needs bubblewrap).",
    ),
    Setting(
        "sandbox.limit_cpu_time",
        3600.0,
        parse_duration,
        "RLIMIT_CPU of every task (0: the agent's own limit).",
    ),
    Setting(
        "sandbox.limit_address_space",
        8 * 1024**3,
        parse_bytes,
        "RLIMIT_AS (virtual memory) of every task (0: the agent's own limit).",
    ),
    Setting(
        "sandbox.limit_processes",
        4096,
        _parse_int,
        "RLIMIT_NPROC of every task; counts all processes of the agent's user (0: the agent's).",
    ),
    Setting(
        "sandbox.limit_file_size",
        1024**3,
        parse_bytes,
        "RLIMIT_FSIZE, the largest file a task may write (0: the agent's own limit).",
    ),
    Setting(
        "sandbox.limit_open_files",
        1024,
        _parse_int,
        "RLIMIT_NOFILE of every task (0: the agent's own limit).",
    ),
    Setting("sandbox.max_runtime", 3600.0, _parse_interval, "Longest a task may run."),
    Setting(
        "sandbox.max_output_bytes",
        1024 * 1024,
        parse_bytes,
        "Largest stdout (and stderr) kept per task.",
    ),
    Setting("sync.max_chunk_bytes", 1024 * 1024, _parse_positive_bytes, "Largest SyncFile chunk."),
    Setting(
        "sync.max_file_bytes", 1024**3, _parse_positive_bytes, "Largest file a node may upload."
    ),
    Setting(
        "sync.quota_bytes",
        0,
        parse_bytes,
        "Mirror quota in bytes of nodes without their own (`nodes quota`); 0: no limit.",
    ),
    Setting(
        "sync.quota_files",
        0,
        _parse_int,
        "Mirror quota in files of nodes without their own (`nodes quota`); 0: no limit.",
    ),
    Setting(
        "sync.free_space_reserve",
        "5%",
        _parse_reserve,
        "Uploads are refused while the mirrors' file system has less free: a percentage "
        "of it (5%) or a size (2GiB); it keeps room for the store and admin commands.",
    ),
    Setting(
        "sync.lock_wait",
        5.0,
        parse_duration,
        "How long an upload waits for a busy path before ABORTED.",
    ),
    Setting(
        "sync.lock_ttl",
        600.0,
        parse_duration,
        "Idle time after which `gc locks` may remove an upload lease.",
    ),
    Setting(
        "sync.mirror_retention",
        30 * 86400.0,
        parse_duration,
        "How long the mirror of a node not seen is kept by `gc mirrors`.",
    ),
    Setting(
        "jobs.task_expiry_interval",
        5.0,
        _parse_interval,
        "How often the hub ends queued tasks past their expiry as EXPIRED.",
    ),
    Setting("jobs.lock_gc_interval", 60.0, _parse_interval, "Interval of the lock GC job."),
    Setting("jobs.mirror_gc_interval", 3600.0, _parse_interval, "Interval of the mirror GC job."),
    Setting("jobs.invite_gc_interval", 3600.0, _parse_interval, "Interval of the invite GC job."),
    Setting(
        "jobs.journal_gc_interval",
        3600.0,
        _parse_interval,
        "Interval of the journal retention job.",
    ),
    Setting(
        "jobs.journal_retention",
        30 * 86400.0,
        parse_duration,
        "Age after which terminal tasks are removed from the journal.",
    ),
    Setting(
        "jobs.invite_retention",
        7 * 86400.0,
        parse_duration,
        "Age after which expired, used-up or revoked invites are removed.",
    ),
    Setting(
        "jobs.audit_retention",
        365 * 86400.0,
        parse_duration,
        "Age after which audit log entries are removed (`gc audit`, the audit_gc job).",
    ),
    Setting("jobs.audit_gc_interval", 3600.0, parse_duration, "Interval of the audit GC job."),
    Setting(
        "jobs.presence_flush_interval",
        1.0,
        _parse_interval,
        "How often the hub writes node presence to the store.",
    ),
    Setting(
        "metrics.listen",
        "",
        _parse_optional_address,
        "Address for Prometheus metrics, e.g. 127.0.0.1:9464 (off when empty).",
        env="CORTEX_METRICS_LISTEN",
    ),
    Setting(
        "log.format",
        "auto",
        _parse_choice("auto", "text", "json"),
        "Log format: text on a terminal, json for machines.",
        env="CORTEX_LOG_FORMAT",
    ),
    Setting(
        "log.level",
        "info",
        _parse_choice("debug", "info", "warning", "error"),
        "Log level.",
        env="CORTEX_LOG_LEVEL",
    ),
)
SETTINGS_BY_KEY = {setting.key: setting for setting in SETTINGS}


def is_duration(setting: Setting) -> bool:
    return setting.parse in (parse_duration, _parse_interval)


def is_bytes(setting: Setting) -> bool:
    return setting.parse in (parse_bytes, _parse_positive_bytes)


# --- typed settings: one frozen section object per [section], attribute per key ------------
# Durations are float seconds, sizes int bytes, lists tuples of str. A new Setting above
# needs its attribute here too (tests/unit/test_units_and_config.py checks both agree).


@dataclass(frozen=True)
class StoreSection:
    """[store] Where the store is and how the hub reaches it."""

    data_dir: str
    database_url: str
    group: str
    workers: int
    idle_in_transaction_timeout: float  # 0: the hub's lease
    disk_ballast: int  # bytes; 0: no ballast (SQLite only)


@dataclass(frozen=True)
class HubSection:
    """[hub] The hub's listener and its protocol timings."""

    listen: str
    heartbeat_interval: float
    lost_node_grace: float
    drain_timeout: float
    handshake_deadline: float
    poll_interval: float
    auth_failure_limit: int
    task_expiry: float  # 0: queued tasks never expire
    max_connections: int
    lease: float
    handshake_timeout: float
    idle_timeout: float
    admin_cert_roles: tuple[str, ...]  # SUBJECT=ROLE (core.roles.parse_cert_roles)


@dataclass(frozen=True)
class JobsSection:
    """[jobs] The maintenance jobs' intervals and retention."""

    status_file_interval: float
    lock_gc_interval: float
    mirror_gc_interval: float
    invite_gc_interval: float
    journal_gc_interval: float
    journal_retention: float
    invite_retention: float
    audit_retention: float
    audit_gc_interval: float
    presence_flush_interval: float
    task_expiry_interval: float


@dataclass(frozen=True)
class SandboxSection:
    """[sandbox] Hub-wide sandbox defaults for nodes without a policy of their own."""

    default_mode: str
    default_allowed_commands: tuple[str, ...]
    allowed_env: tuple[str, ...]
    network: str  # allow | deny
    limit_cpu_time: float
    limit_address_space: int
    limit_processes: int
    limit_file_size: int
    limit_open_files: int
    max_runtime: float
    max_output_bytes: int


@dataclass(frozen=True)
class SyncSection:
    """[sync] File sync: chunk and file sizes, quotas, free-space reserve, upload locks,
    mirror retention."""

    max_chunk_bytes: int
    max_file_bytes: int
    quota_bytes: int
    quota_files: int
    free_space_reserve: str
    lock_wait: float
    lock_ttl: float
    mirror_retention: float


@dataclass(frozen=True)
class MetricsSection:
    """[metrics] The Prometheus endpoint."""

    listen: str


@dataclass(frozen=True)
class LogSection:
    """[log] Logging."""

    format: str
    level: str


SECTIONS: dict[str, type[Any]] = {
    "store": StoreSection,
    "hub": HubSection,
    "jobs": JobsSection,
    "sandbox": SandboxSection,
    "sync": SyncSection,
    "metrics": MetricsSection,
    "log": LogSection,
}


@dataclass
class Settings:
    """Effective settings with the source each value came from.

    Read them typed: ``settings.hub.heartbeat_interval`` (a float of seconds),
    ``settings.sync.max_chunk_bytes`` (an int). ``settings["hub.listen"]`` still works and is
    typed per key; ``settings.source(key)`` says where a value came from.
    """

    values: dict[str, Any]
    sources: dict[str, str]
    config_file: Path | None = None  # the user's file (or --config), if any
    system_config_file: Path | None = None  # the system file, if it exists
    _sections: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @overload
    def __getitem__(self, key: Literal["store.data_dir"]) -> str: ...
    @overload
    def __getitem__(self, key: Literal["store.database_url"]) -> str: ...
    @overload
    def __getitem__(self, key: Literal["store.group"]) -> str: ...
    @overload
    def __getitem__(self, key: Literal["store.workers"]) -> int: ...
    @overload
    def __getitem__(self, key: Literal["store.idle_in_transaction_timeout"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["store.disk_ballast"]) -> int: ...
    @overload
    def __getitem__(self, key: Literal["hub.listen"]) -> str: ...
    @overload
    def __getitem__(self, key: Literal["hub.heartbeat_interval"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["hub.lost_node_grace"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["hub.drain_timeout"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["hub.handshake_deadline"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["hub.poll_interval"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["hub.auth_failure_limit"]) -> int: ...
    @overload
    def __getitem__(self, key: Literal["hub.task_expiry"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["jobs.task_expiry_interval"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["hub.max_connections"]) -> int: ...
    @overload
    def __getitem__(self, key: Literal["hub.lease"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["hub.handshake_timeout"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["hub.idle_timeout"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["hub.admin_cert_roles"]) -> tuple[str, ...]: ...
    @overload
    def __getitem__(self, key: Literal["jobs.status_file_interval"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["jobs.lock_gc_interval"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["jobs.mirror_gc_interval"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["jobs.invite_gc_interval"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["jobs.journal_gc_interval"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["jobs.journal_retention"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["jobs.invite_retention"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["jobs.audit_retention"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["jobs.audit_gc_interval"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["jobs.presence_flush_interval"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["sandbox.default_mode"]) -> str: ...
    @overload
    def __getitem__(self, key: Literal["sandbox.default_allowed_commands"]) -> tuple[str, ...]: ...
    @overload
    def __getitem__(self, key: Literal["sandbox.allowed_env"]) -> tuple[str, ...]: ...
    @overload
    def __getitem__(self, key: Literal["sandbox.network"]) -> str: ...
    @overload
    def __getitem__(self, key: Literal["sandbox.limit_cpu_time"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["sandbox.limit_address_space"]) -> int: ...
    @overload
    def __getitem__(self, key: Literal["sandbox.limit_processes"]) -> int: ...
    @overload
    def __getitem__(self, key: Literal["sandbox.limit_file_size"]) -> int: ...
    @overload
    def __getitem__(self, key: Literal["sandbox.limit_open_files"]) -> int: ...
    @overload
    def __getitem__(self, key: Literal["sandbox.max_runtime"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["sandbox.max_output_bytes"]) -> int: ...
    @overload
    def __getitem__(self, key: Literal["sync.max_chunk_bytes"]) -> int: ...
    @overload
    def __getitem__(self, key: Literal["sync.max_file_bytes"]) -> int: ...
    @overload
    def __getitem__(self, key: Literal["sync.quota_bytes"]) -> int: ...
    @overload
    def __getitem__(self, key: Literal["sync.quota_files"]) -> int: ...
    @overload
    def __getitem__(self, key: Literal["sync.free_space_reserve"]) -> str: ...
    @overload
    def __getitem__(self, key: Literal["sync.lock_wait"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["sync.lock_ttl"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["sync.mirror_retention"]) -> float: ...
    @overload
    def __getitem__(self, key: Literal["metrics.listen"]) -> str: ...
    @overload
    def __getitem__(self, key: Literal["log.format"]) -> str: ...
    @overload
    def __getitem__(self, key: Literal["log.level"]) -> str: ...
    @overload
    def __getitem__(self, key: str) -> Any: ...  # a key added this session, not yet typed
    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def source(self, key: str) -> str:
        """Where the value of ``key`` came from: flag, env VAR, file PATH or default."""
        return self.sources[key]

    def _section(self, name: str) -> Any:
        if name not in self._sections:
            cls = SECTIONS[name]
            self._sections[name] = cls(
                **{item.name: self.values[f"{name}.{item.name}"] for item in fields(cls)}
            )
        return self._sections[name]

    @property
    def store(self) -> StoreSection:
        return cast(StoreSection, self._section("store"))

    @property
    def hub(self) -> HubSection:
        return cast(HubSection, self._section("hub"))

    @property
    def jobs(self) -> JobsSection:
        return cast(JobsSection, self._section("jobs"))

    @property
    def sandbox(self) -> SandboxSection:
        return cast(SandboxSection, self._section("sandbox"))

    @property
    def sync(self) -> SyncSection:
        return cast(SyncSection, self._section("sync"))

    @property
    def metrics(self) -> MetricsSection:
        return cast(MetricsSection, self._section("metrics"))

    @property
    def log(self) -> LogSection:
        return cast(LogSection, self._section("log"))

    @property
    def data_dir(self) -> Path:
        configured = self.store.data_dir
        return Path(configured).expanduser() if configured else default_data_dir()

    @property
    def database_url(self) -> str:
        return self.store.database_url or sqlite_url(self.data_dir / "cortex.db")

    @property
    def mirrors_dir(self) -> Path:
        return self.data_dir / "mirrors"

    @property
    def store_path(self) -> Path | None:
        """The SQLite file of the store, or None for a server database."""
        if not self.values["store.database_url"]:
            return self.data_dir / "cortex.db"
        return sqlite_path(self.values["store.database_url"])

    def store_choice(self) -> StoreChoice:
        """Which store is in use and which setting (from which layer) chose it."""
        url_source = self.sources["store.database_url"]
        if self.values["store.database_url"]:
            key, source = "store.database_url", url_source
        elif self.sources["store.data_dir"] != "default":
            key, source = "store.data_dir", self.sources["store.data_dir"]
        else:
            key, source = "store.data_dir", "default"
        if source == "default":
            reason = f"default: the user data dir of {_user_name()} (nothing sets store.data_dir)"
        else:
            reason = f"{key} set by {source}"
        path = self.store_path
        return StoreChoice(
            url=display_url(self.database_url),
            path=str(path) if path is not None else None,
            data_dir=str(self.data_dir),
            key=key,
            source=source.partition(" ")[0],
            origin=source.partition(" ")[2],
            reason=reason,
            exists=path.is_file() if path is not None else None,
        )


@dataclass(frozen=True)
class StoreChoice:
    """The store in use and why: `config show` and `--version -o json` print this."""

    url: str  # password hidden
    path: str | None  # the SQLite file; None for PostgreSQL
    data_dir: str  # where mirrors live (and the SQLite file by default)
    key: str  # the setting that chose it: store.database_url or store.data_dir
    source: str  # flag, env, file or default
    origin: str  # the variable or file it came from; "" for flag and default
    reason: str  # one sentence for people
    exists: bool | None  # whether the SQLite file exists; None when not a file


def _user_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL (None for another database or an in-memory one)."""
    if not url.startswith("sqlite:"):
        return None
    rest = url.split(":", 1)[1]
    if not rest.startswith("///"):
        return None
    database = rest[3:].split("?", 1)[0]
    if not database or database == ":memory:":
        return None
    return Path(database).expanduser()


def display_url(url: str) -> str:
    """The URL with its password hidden, without importing SQLAlchemy."""
    import re

    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def system_config_path(environ: Mapping[str, str]) -> Path:
    return Path(environ.get(SYSTEM_CONFIG_VAR) or SYSTEM_CONFIG).expanduser()


def user_config_path(explicit: str | None, environ: Mapping[str, str]) -> Path:
    """The user's file: --config / CORTEX_CONFIG, else the platformdirs user config dir."""
    chosen = explicit or environ.get("CORTEX_CONFIG")
    if chosen:
        return Path(chosen).expanduser()
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def config_search_path(explicit: str | None, environ: Mapping[str, str]) -> list[Path]:
    """Files read, highest precedence first: the user's file, then the system file."""
    return [user_config_path(explicit, environ), system_config_path(environ)]


def find_config_file(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """The user's file if it exists (an explicit one is returned even if missing)."""
    path = user_config_path(explicit, environ)
    if explicit or environ.get("CORTEX_CONFIG"):
        return path  # may not exist yet: `config set` and `init` create it
    return path if path.is_file() else None


def _parse_document(path: Path) -> Any:
    """The file as a tomlkit document (comments kept), or None if it does not exist."""
    import tomlkit
    from tomlkit.exceptions import ParseError

    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {err.start}: {err.reason})"
        ) from None
    except ParseError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """Return ``{"section.key": value}`` from a TOML file; errors name file, key and problem."""
    if not path.exists():  # the usual case for the system file: no tomlkit import at all
        return {}
    document = _parse_document(path)
    if document is None:
        return {}
    flat: dict[str, Any] = {}
    for section, table in document.unwrap().items():
        if not isinstance(table, dict):
            raise ConfigError(f"config file {path}: {section!r} must be a [section] table")
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in SETTINGS_BY_KEY:
                raise ConfigError(
                    f"config file {path}: unknown key {key!r} "
                    "(see `cortexctl config show` for the known keys)"
                )
            flat[key] = value
    return flat


def load_settings(
    flags: Mapping[str, Any] | None = None,
    config_path: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every setting: flag > CORTEX_* env > user file > system file > default.

    Every value is checked here, so a bad one is a one-line error naming its layer before
    any command (``serve`` included) starts work.
    """
    environ = os.environ if environ is None else environ
    flags = flags or {}
    path = find_config_file(config_path, environ)
    if path is not None and (config_path or environ.get("CORTEX_CONFIG")) and not path.exists():
        raise ConfigError(
            f"config file {path} does not exist (create it with `cortexctl config init`)"
        )
    from_file = read_config_file(path) if path is not None else {}
    system = system_config_path(environ)
    from_system = read_config_file(system) if system != path else {}
    system_file = system if from_system or system.is_file() else None
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        layers = (
            ("flag", flags.get(setting.key)),
            (f"env {setting.env_var}", environ.get(setting.env_var)),
            (f"file {path}", from_file.get(setting.key)),
            (f"file {system}", from_system.get(setting.key)),
        )
        for source, raw in layers:
            if raw is None or raw == "" and source != "flag":
                continue
            try:
                values[setting.key] = setting.parse(raw)
            except InvalidArgument as err:
                raise ConfigError(f"{source}: bad value for {setting.key}: {err}") from None
            sources[setting.key] = source
            break
        else:
            values[setting.key] = setting.default
            sources[setting.key] = "default"
    return Settings(
        values=values, sources=sources, config_file=path, system_config_file=system_file
    )


# --- `cortexctl config`: look-up, template, edits that keep comments and order ----------------


def lookup_setting(key: str) -> Setting:
    """The setting named ``key``; an unknown key is NotFound naming the nearest known keys."""
    setting = SETTINGS_BY_KEY.get(key)
    if setting is not None:
        return setting
    import difflib

    similar = difflib.get_close_matches(key, SETTINGS_BY_KEY, n=3, cutoff=0.6)
    # "listen" or "retention" alone should still find hub.listen, jobs.journal_retention...
    name = key.rsplit(".", 1)[-1].lower()
    if len(name) >= 3:
        similar += [known for known in SETTINGS_BY_KEY if name in known.rsplit(".", 1)[1]]
    similar = list(dict.fromkeys(similar))[:5]
    hint = f"; did you mean {', '.join(similar)}?" if similar else ""
    raise NotFound(f"unknown setting {key!r}{hint} (`cortexctl config show` lists every key)")


def config_target_file(explicit: str | None, environ: Mapping[str, str]) -> Path:
    """The file `config set` and `config init` write: the one in effect, else the user's."""
    return find_config_file(explicit, environ) or config_search_path(explicit, environ)[0]


def toml_value(setting: Setting, text: str) -> Any:
    """The value `config set` writes for ``text``, checked with the setting's parser.

    Durations and sizes keep the operator's spelling ("10m", "64KiB"); bare numbers are
    written as TOML numbers and lists as arrays.
    """
    try:
        parsed = setting.parse(text)
    except InvalidArgument as err:
        raise InvalidArgument(f"bad value for {setting.key}: {err}") from None
    if isinstance(parsed, tuple):
        return list(parsed)
    if isinstance(parsed, int | float) and not isinstance(parsed, bool):
        for number in (int, float):
            try:
                return number(text)
            except ValueError:
                pass
        return text.strip()
    return parsed


def write_setting(path: Path, key: str, text: str) -> Any:
    """Set ``key`` in the config file (created if missing), keeping its comments and order.

    Returns the value written.
    """
    import tomlkit

    setting = lookup_setting(key)
    value = toml_value(setting, text)
    section, name = key.split(".", 1)
    document = _parse_document(path)
    if document is None:
        document = tomlkit.document()
    table = document.get(section)
    if table is None:
        document.add(section, tomlkit.table())
        table = document[section]
    elif not isinstance(table, MutableMapping):
        raise ConfigError(f"config file {path}: {section!r} must be a [section] table")
    table[name] = value
    write_config_file(path, tomlkit.dumps(document))
    return value


def write_config_file(
    path: Path,
    text: str,
    *,
    what: str = "config file",
    hint: str = "choose another with --config",
    private: bool = False,
) -> None:
    """Replace the file atomically. The new content is written 0600 from its first byte
    (it may hold a database password, or admin tokens), then takes the old file's mode
    unless ``private``."""
    # Write through a symlink, so a config kept in a dotfiles repository stays linked.
    target = path.resolve() if path.is_symlink() else path
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if target.exists() and not private:
            shutil.copymode(target, temp)
        os.replace(temp, target)
    except OSError as err:
        temp.unlink(missing_ok=True)
        raise CortexError(f"cannot write {what} {path}: {err.strerror}; {hint}") from None


def toml_default(setting: Setting) -> str:
    """The default of ``setting`` as TOML, spelled the way a person would write it."""
    import tomlkit

    value: Any = setting.default
    if is_duration(setting):
        value = _duration_text(float(value))
    elif is_bytes(setting):
        value = _bytes_text(int(value))
    elif isinstance(value, tuple):
        value = list(value)
    return str(tomlkit.item(value).as_string())


def _duration_text(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds * 1000:g}ms"


def _bytes_text(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def config_template() -> str:
    """A config file listing every setting, commented out at its default, with its help."""
    import textwrap

    lines = [
        "# cortexctl configuration (TOML).",
        "#",
        "# Precedence: command-line flag > CORTEX_* environment variable > this file > default.",
        "# Every setting is commented out at its built-in default: uncomment a line to change",
        "# it, or run `cortexctl config set KEY VALUE`. `cortexctl config show` prints the",
        "# effective value of each setting and where it came from.",
    ]
    # Grouped by section (a TOML table may appear only once), in the order of SETTINGS.
    sections: dict[str, list[Setting]] = {}
    for setting in SETTINGS:
        sections.setdefault(setting.key.split(".", 1)[0], []).append(setting)
    for table, settings in sections.items():
        lines += ["", f"[{table}]"]
        for setting in settings:
            lines.append("")
            lines += [f"# {line}" for line in textwrap.wrap(setting.help, 86)]
            lines.append(f"# (environment: {setting.env_var})")
            lines.append(f"# {setting.key.split('.', 1)[1]} = {toml_default(setting)}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SettingView:
    """One setting as `config show` and `config get` print it (JSON keys are stable)."""

    key: str
    value: Any  # durations in seconds, sizes in bytes, lists as lists
    source: str  # flag, env, file or default
    origin: str  # the environment variable or file it came from; "" for flag and default
    env: str  # the environment variable that sets it


# Settings whose value may carry a password (a database URL with user:password@).
SECRET_URL_SETTINGS = frozenset({"store.database_url"})


def redacted(key: str, value: Any) -> Any:
    """A setting's value as it may be shown: passwords in database URLs masked."""
    if key in SECRET_URL_SETTINGS and isinstance(value, str) and value:
        return redact_url(value)
    return value


def describe_settings(settings: Settings, keys: list[str] | None = None) -> list[SettingView]:
    """Every setting (or those named) with its effective value and where that came from.

    For display: a password in a database URL is shown as ***, in every format.
    """
    views = []
    for setting in [lookup_setting(key) for key in keys] if keys else SETTINGS:
        source, _, origin = settings.sources[setting.key].partition(" ")
        value = redacted(setting.key, settings.values[setting.key])
        views.append(
            SettingView(
                key=setting.key,
                value=list(value) if isinstance(value, tuple) else value,
                source=source,
                origin=origin,
                env=setting.env_var,
            )
        )
    return views


def display_value(key: str, value: Any) -> str:
    """A value as a person writes it; `config set` and the CORTEX_* variable accept it back."""
    setting = SETTINGS_BY_KEY[key]
    if is_duration(setting):
        return _duration_text(float(value))
    if is_bytes(setting):
        return _bytes_text(int(value))
    if isinstance(value, list | tuple):
        return ",".join(value)
    return str(value)
