"""What every command shares: settings resolved once, the store opened on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from cortexctl.config import Settings
    from cortexctl.core.sandbox import SandboxDefaults
    from cortexctl.store.engine import Store


@dataclass
class CliContext:
    config_path: str | None = None
    flags: dict[str, Any] = field(default_factory=dict)
    _settings: Settings | None = None
    _store: Store | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from cortexctl.config import load_settings

            self._settings = load_settings(self.flags, self.config_path)
        return self._settings

    def store(self, *, check_schema: bool = True) -> Store:
        """The store, with its schema created if the database is empty."""
        if self._store is None:
            from cortexctl.store.engine import Store, ensure_current

            store = Store(self.settings.database_url, pool_size=2)
            if check_schema:
                try:
                    ensure_current(store)
                except BaseException:
                    store.dispose()
                    raise
            self._store = store
        return self._store

    @property
    def sandbox_defaults(self) -> SandboxDefaults:
        from cortexctl.hub.runtime import sandbox_defaults

        return sandbox_defaults(self.settings)

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None


def cli_context(ctx: typer.Context) -> CliContext:
    root = ctx.find_root()
    if not isinstance(root.obj, CliContext):
        root.obj = CliContext()
    return root.obj
