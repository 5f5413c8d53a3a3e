"""What every command shares: settings resolved once, the store opened on demand, or the
hub's admin API when a remote context is in use (``remote``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cortexctl.errors import InvalidArgument, StoreMissing, Unavailable

if TYPE_CHECKING:
    from cortexctl.cli.remote import Remote
    from cortexctl.config import Settings
    from cortexctl.contexts import Context
    from cortexctl.core.quotas import QuotaDefaults
    from cortexctl.core.sandbox import SandboxDefaults
    from cortexctl.store.engine import Store

NO_STORE_HINT = "is the hub using another data dir? (see `cortexctl config show`)"
LOCAL_COMMANDS = ("serve", "agent", "db")  # run on the hub's host, whatever the context
_UNSET: Any = object()


class NotRemote(InvalidArgument):
    """A command with no remote path, run with a remote context (exit 2): the safety net
    of a new command that reads the store; none today (tests/cli/test_contexts.py)."""


@dataclass
class CliContext:
    config_path: str | None = None
    flags: dict[str, Any] = field(default_factory=dict)
    context_name: str | None = None  # --context (else CORTEX_CONTEXT, else the file's)
    local_only: bool = False  # `db`, `serve`, `agent`: always the store here
    command_path: str = ""
    _settings: Settings | None = None
    _store: Store | None = None
    _context: Any = _UNSET
    _remote: Remote | None = None

    @property
    def context(self) -> Context | None:
        """The remote context in use, or None: the store, directly."""
        if self.local_only:
            return None
        if self._context is _UNSET:
            from cortexctl.contexts import resolve

            self._context = resolve(self.context_name)
        return self._context  # type: ignore[no-any-return]

    def remote(self) -> Remote | None:
        """The admin API of the context's hub, or None with no remote context."""
        context = self.context
        if context is None:
            return None
        if self._remote is None:
            from cortexctl.cli.remote import Remote

            self._remote = Remote(context)
        return self._remote

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from cortexctl.config import load_settings

            self._settings = load_settings(self.flags, self.config_path)
        return self._settings

    def store(self, *, check_schema: bool = True, create: bool = False) -> Store:
        """The store the settings point at.

        Only commands meant to start a store pass ``create=True`` (``invites create``,
        ``db upgrade``; ``serve`` opens its own): every other command fails with
        StoreMissing (exit 4) rather than quietly creating an empty store, so a mistyped
        ``--data-dir`` or a hub using another data dir shows at once.
        """
        if self._store is None:
            context = self.context
            if context is not None:
                command = f"`{self.command_path}`" if self.command_path else "this command"
                raise NotRemote(
                    f"{command} is not available through a remote context yet (context "
                    f"{context.name!r}, hub {context.hub}); use a local context on the hub's "
                    "host (`--context local`)"
                )
            settings = self.settings
            path = settings.store_path
            if not create and path is not None and not _is_file(path):
                raise StoreMissing(f"no store at {path} — {NO_STORE_HINT}")
            from cortexctl.core.permissions import hub_modes
            from cortexctl.store import engine

            modes = hub_modes(settings.store.group)
            store = engine.Store(settings.database_url, pool_size=2, modes=modes)
            try:
                current = engine.current_revision(store) if check_schema else ""
                if current is None and not create:
                    raise StoreMissing(
                        f"no store at {store.display_url} (the database has no cortexctl "
                        f"schema) — {NO_STORE_HINT}"
                    )
                if current is None:
                    engine.upgrade(store)
                elif check_schema and current != engine.SCHEMA_HEAD:
                    engine.ensure_current(store)
            except BaseException:
                store.dispose()
                raise
            self._store = store
        return self._store

    @property
    def store_url(self) -> str | None:
        """The URL of the store opened so far, if any (for error messages)."""
        return self._store.url if self._store is not None else None

    @property
    def sandbox_defaults(self) -> SandboxDefaults:
        from cortexctl.core.sandbox import sandbox_defaults

        return sandbox_defaults(self.settings)

    @property
    def quota_defaults(self) -> QuotaDefaults:
        from cortexctl.core.quotas import quota_defaults

        return quota_defaults(self.settings)

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()
            self._remote = None
        if self._store is not None:
            self._store.dispose()
            self._store = None


def _is_file(path: Path) -> bool:
    """``path.is_file()``, or Unavailable (exit 4) naming the folder this user may not read:
    on the systemd layout the data dir is the hub's, shared only through ``store.group``."""
    try:
        return path.is_file()
    except PermissionError:
        folder = next((p for p in reversed(path.parents) if not os.access(p, os.X_OK)), path)
        raise Unavailable(
            f"cannot read the store at {path}: permission denied on {folder}{_owner(folder)}"
            " — join the hub's group (store.group in /etc/cortexctl/config.toml, e.g. "
            "`usermod -aG cortex $USER`, then log in again) or run as the hub's user"
        ) from None


def _owner(path: Path) -> str:
    import grp
    import pwd

    try:
        stat = path.stat()
        owner, group = pwd.getpwuid(stat.st_uid).pw_name, grp.getgrgid(stat.st_gid).gr_name
    except (OSError, KeyError):
        return ""
    return f" (owner {owner}, group {group})"


def cli_context(ctx: typer.Context) -> CliContext:
    root = ctx.find_root()
    if not isinstance(root.obj, CliContext):
        root.obj = CliContext()
    if ctx is not root:
        root.obj.command_path = ctx.command_path  # for "not available through a context"
        words = ctx.command_path.split()
        root.obj.local_only = len(words) > 1 and words[1] in LOCAL_COMMANDS
    return root.obj
