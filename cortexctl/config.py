"""Settings: built-in default < config file < ``CORTEX_*`` environment < command-line flag.

The config file is TOML (read and written with tomlkit so ``config set`` keeps comments and
order). It is found at ``--config`` / ``CORTEX_CONFIG``, else the platformdirs user config
dir, else ``/etc/cortexctl/config.toml``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from cortexctl.errors import ConfigError, UsageError
from cortexctl.units import parse_bytes, parse_duration

APP_NAME = "cortexctl"
SYSTEM_CONFIG = Path("/etc/cortexctl/config.toml")


def _parse_str(value: Any) -> str:
    if not isinstance(value, str):
        raise UsageError(f"expected a string, got {value!r}")
    return value


def _parse_int(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"expected a whole number, got {value!r}") from None
    if number < 0:
        raise UsageError(f"must not be negative, got {value!r}")
    return number


def _parse_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise UsageError(f"expected a list of strings, got {value!r}")


def _parse_choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).lower()
        if text not in choices:
            raise UsageError(f"expected one of {', '.join(choices)}, got {value!r}")
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
    Setting("store.workers", 8, _parse_int, "Threads that run store and file work for the hub."),
    Setting(
        "hub.listen",
        "127.0.0.1:50051",
        _parse_str,
        "Address the hub listens on.",
        env="CORTEX_LISTEN",
    ),
    Setting(
        "hub.heartbeat_interval",
        5.0,
        parse_duration,
        "How often nodes send heartbeats; a stream silent for 3 intervals is closed.",
    ),
    Setting(
        "hub.handshake_deadline",
        2.0,
        parse_duration,
        "How long a handshake may wait for the store before answering UNAVAILABLE.",
    ),
    Setting(
        "hub.poll_interval",
        0.5,
        parse_duration,
        "How often the hub looks for changes made by the CLI (tasks, policies, revocations).",
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
        "Commands a STRICT node may run when it has no allow-list of its own.",
    ),
    Setting("sandbox.max_runtime", 3600.0, parse_duration, "Longest a task may run."),
    Setting(
        "sandbox.max_output_bytes",
        1024 * 1024,
        parse_bytes,
        "Largest stdout (and stderr) kept per task.",
    ),
    Setting("sync.max_chunk_bytes", 1024 * 1024, parse_bytes, "Largest SyncFile chunk."),
    Setting("sync.max_file_bytes", 1024**3, parse_bytes, "Largest file a node may upload."),
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
    Setting("jobs.lock_gc_interval", 60.0, parse_duration, "Interval of the lock GC job."),
    Setting("jobs.mirror_gc_interval", 3600.0, parse_duration, "Interval of the mirror GC job."),
    Setting("jobs.invite_gc_interval", 3600.0, parse_duration, "Interval of the invite GC job."),
    Setting(
        "jobs.journal_gc_interval", 3600.0, parse_duration, "Interval of the journal retention job."
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
        "jobs.presence_flush_interval",
        1.0,
        parse_duration,
        "How often the hub writes node presence to the store.",
    ),
    Setting(
        "metrics.listen",
        "",
        _parse_str,
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


@dataclass
class Settings:
    """Effective settings with the source each value came from."""

    values: dict[str, Any]
    sources: dict[str, str]
    config_file: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def data_dir(self) -> Path:
        configured = self.values["store.data_dir"]
        return Path(configured).expanduser() if configured else default_data_dir()

    @property
    def database_url(self) -> str:
        return self.values["store.database_url"] or sqlite_url(self.data_dir / "cortex.db")

    @property
    def mirrors_dir(self) -> Path:
        return self.data_dir / "mirrors"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def config_search_path(explicit: str | None, environ: Mapping[str, str]) -> list[Path]:
    """Files tried in order; an explicit file (flag or CORTEX_CONFIG) is the only one tried."""
    chosen = explicit or environ.get("CORTEX_CONFIG")
    if chosen:
        return [Path(chosen).expanduser()]
    return [Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml", SYSTEM_CONFIG]


def find_config_file(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    candidates = config_search_path(explicit, environ)
    if explicit or environ.get("CORTEX_CONFIG"):
        return candidates[0]  # may not exist yet: `config set` and `init` create it
    return next((path for path in candidates if path.is_file()), None)


def read_config_file(path: Path) -> dict[str, Any]:
    """Return ``{"section.key": value}`` from a TOML file; errors name file, key and problem."""
    import tomlkit
    from tomlkit.exceptions import ParseError

    try:
        document = tomlkit.parse(path.read_text())
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except ParseError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
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
    """Resolve every setting: flag > CORTEX_* env > config file > default."""
    environ = os.environ if environ is None else environ
    flags = flags or {}
    path = find_config_file(config_path, environ)
    if path is not None and (config_path or environ.get("CORTEX_CONFIG")) and not path.exists():
        raise ConfigError(
            f"config file {path} does not exist (create it with `cortexctl config init`)"
        )
    from_file = read_config_file(path) if path is not None else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        layers = (
            ("flag", flags.get(setting.key)),
            (f"env {setting.env_var}", environ.get(setting.env_var)),
            (f"file {path}", from_file.get(setting.key)),
        )
        for source, raw in layers:
            if raw is None or raw == "" and source != "flag":
                continue
            try:
                values[setting.key] = setting.parse(raw)
            except UsageError as err:
                raise ConfigError(f"{source}: bad value for {setting.key}: {err}") from None
            sources[setting.key] = source
            break
        else:
            values[setting.key] = setting.default
            sources[setting.key] = "default"
    return Settings(values=values, sources=sources, config_file=path)
