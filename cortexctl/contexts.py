"""CLI contexts: named hubs to run every command against through the admin API.

A context names a hub (``HOST:PORT``), the CA that signed its certificate, and the
credential to call it with (an admin token, a client certificate, or both). They live in
``contexts.toml`` in the platformdirs user config dir (``CORTEX_CONTEXTS_FILE`` overrides),
mode 0600 and replaced whole on every change, since it holds admin tokens. The context in
use is ``--context NAME``, else ``CORTEX_CONTEXT``, else the file's ``current``; the name
``local`` (or no context at all) means the store, directly, as without contexts.

Reading needs only the standard library (``tomllib``): every command reads this file, and
the remote path must start fast. Writing uses tomlkit.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cortexctl.errors import ConfigError, InvalidArgument, NotFound

LOCAL = "local"  # the store, directly (no admin API)
FILE_ENV = "CORTEX_CONTEXTS_FILE"
CONTEXT_ENV = "CORTEX_CONTEXT"
APP_NAME = "cortexctl"
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True)
class Context:
    name: str
    hub: str  # HOST:PORT
    ca_cert: str | None = None  # PEM file of the CA that signed the hub's certificate
    token: str = field(default="", repr=False)  # an admin token; never printed
    cert: str | None = None  # client certificate and key (a hub with --tls-client-ca)
    key: str | None = None
    insecure: bool = False  # plaintext off loopback, said out loud at `context add`

    @property
    def credential(self) -> str:
        """How this context authenticates, in words (never the token itself)."""
        parts = []
        if self.token:
            parts.append("admin token")
        if self.cert:
            parts.append("client certificate")
        return " + ".join(parts) or "none"


@dataclass
class ContextFile:
    path: Path
    current: str | None = None
    contexts: dict[str, Context] = field(default_factory=dict)


def contexts_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    explicit = environ.get(FILE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir(APP_NAME)) / "contexts.toml"


def load(environ: Mapping[str, str] | None = None) -> ContextFile:
    path = contexts_path(environ)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ContextFile(path)
    except OSError as err:
        raise ConfigError(f"cannot read contexts file {path}: {err.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"contexts file {path} is not valid TOML: {err}") from None
    contexts: dict[str, Context] = {}
    table = data.get("contexts", {})
    if not isinstance(table, dict):
        raise ConfigError(f"contexts file {path}: [contexts] must be a table")
    for name, entry in table.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("hub"), str):
            raise ConfigError(f"contexts file {path}: context {name!r} needs hub = 'HOST:PORT'")
        contexts[name] = Context(
            name=name,
            hub=entry["hub"],
            ca_cert=_text(entry.get("ca_cert")),
            token=str(entry.get("token") or ""),
            cert=_text(entry.get("cert")),
            key=_text(entry.get("key")),
            insecure=bool(entry.get("insecure", False)),
        )
    current = data.get("current")
    return ContextFile(path, current if isinstance(current, str) and current else None, contexts)


def _text(value: Any) -> str | None:
    return str(value) if value else None


def save(file: ContextFile) -> None:
    """Replace the file whole: written 0600 from its first byte, then renamed over it."""
    import tomlkit

    document = tomlkit.document()
    document.add(tomlkit.comment("cortexctl contexts (`cortexctl context --help`); holds tokens"))
    if file.current:
        document["current"] = file.current
    table = tomlkit.table()
    for name, ctx in sorted(file.contexts.items()):
        entry = tomlkit.table()
        entry["hub"] = ctx.hub
        for key in ("ca_cert", "token", "cert", "key"):
            value = getattr(ctx, key)
            if value:
                entry[key] = value
        if ctx.insecure:
            entry["insecure"] = True
        table[name] = entry
    document["contexts"] = table
    from cortexctl.config import write_config_file

    write_config_file(
        file.path,
        tomlkit.dumps(document),
        what="contexts file",
        hint=f"set {FILE_ENV} to another file",
        private=True,
    )


def check_name(name: str) -> str:
    if not name or not set(name) <= NAME_CHARS:
        raise InvalidArgument(f"bad context name {name!r}: use letters, digits, '-', '_' and '.'")
    if name == LOCAL:
        raise InvalidArgument(f"{LOCAL!r} is the store itself; choose another context name")
    return name


def unknown(name: str, file: ContextFile) -> NotFound:
    known = ", ".join(sorted(file.contexts)) or "none yet"
    return NotFound(
        f"no context {name!r} (known: {known}); add it with `cortexctl context add {name} "
        f"--hub HOST:PORT ...`, or use `--context {LOCAL}` for the store"
    )


def selected_name(explicit: str | None, file: ContextFile, environ: Mapping[str, str]) -> str:
    """The context in use: --context, else CORTEX_CONTEXT, else the file's current."""
    return explicit or environ.get(CONTEXT_ENV) or file.current or LOCAL


def resolve(explicit: str | None, environ: Mapping[str, str] | None = None) -> Context | None:
    """The remote context in use, or None for the store itself."""
    environ = os.environ if environ is None else environ
    if explicit == LOCAL or (explicit is None and environ.get(CONTEXT_ENV) == LOCAL):
        return None  # no need to read the file
    file = load(environ)
    name = selected_name(explicit, file, environ)
    if name == LOCAL:
        return None
    found = file.contexts.get(name)
    if found is None:
        raise unknown(name, file)
    return found


@dataclass(frozen=True)
class ContextView:
    """A context as `context list|show` print it: everything but the token."""

    name: str
    in_use: bool  # the context commands use now
    hub: str | None  # None for `local`
    tls: bool
    ca_cert: str | None
    client_cert: str | None
    credential: str  # admin token | client certificate | both | none (the store)
    chosen_by: str = ""  # --context | CORTEX_CONTEXT | contexts file | default

    @classmethod
    def of(cls, ctx: Context | None, current: bool, chosen_by: str = "") -> ContextView:
        if ctx is None:
            return cls(LOCAL, current, None, False, None, None, "the store here", chosen_by)
        return cls(
            ctx.name,
            current,
            ctx.hub,
            ctx.ca_cert is not None,
            ctx.ca_cert,
            ctx.cert,
            ctx.credential,
            chosen_by,
        )


def chosen_by(explicit: str | None, file: ContextFile, environ: Mapping[str, str]) -> str:
    if explicit:
        return "--context"
    if environ.get(CONTEXT_ENV):
        return CONTEXT_ENV
    return "contexts file" if file.current else "default"
