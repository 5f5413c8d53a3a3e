"""Settings: built-in default < config file < ``CORTEX_*`` environment < command-line flag.

The config file is TOML (read and written with tomlkit so ``config set`` keeps comments and
order). It is found at ``--config`` / ``CORTEX_CONFIG``, else the platformdirs user config
dir, else ``/etc/cortexctl/config.toml``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from cortexctl.errors import ConfigError, CortexError, NotFound, UsageError
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
        "hub.auth_failure_limit",
        20,
        _parse_int,
        "Failed handshakes allowed per peer address per minute before RESOURCE_EXHAUSTED.",
    ),
    Setting(
        "jobs.status_file_interval",
        5.0,
        parse_duration,
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
    except UsageError as err:
        raise UsageError(f"bad value for {setting.key}: {err}") from None
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


def write_config_file(path: Path, text: str) -> None:
    """Replace the file atomically; a new file is private (it may hold a database password)."""
    # Write through a symlink, so a config kept in a dotfiles repository stays linked.
    target = path.resolve() if path.is_symlink() else path
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(text, encoding="utf-8")
        if target.exists():
            shutil.copymode(target, temp)
        else:
            temp.chmod(0o600)
        os.replace(temp, target)
    except OSError as err:
        temp.unlink(missing_ok=True)
        raise CortexError(
            f"cannot write config file {path}: {err.strerror}; choose another with --config"
        ) from None


def toml_default(setting: Setting) -> str:
    """The default of ``setting`` as TOML, spelled the way a person would write it."""
    import tomlkit

    value: Any = setting.default
    if setting.parse is parse_duration:
        value = _duration_text(float(value))
    elif setting.parse is parse_bytes:
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


def describe_settings(settings: Settings, keys: list[str] | None = None) -> list[SettingView]:
    """Every setting (or those named) with its effective value and where that came from."""
    views = []
    for setting in [lookup_setting(key) for key in keys] if keys else SETTINGS:
        source, _, origin = settings.sources[setting.key].partition(" ")
        value = settings.values[setting.key]
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
    if setting.parse is parse_duration:
        return _duration_text(float(value))
    if setting.parse is parse_bytes:
        return _bytes_text(int(value))
    if isinstance(value, list | tuple):
        return ",".join(value)
    return str(value)
