"""What every part of a running hub shares: settings, the executor, live streams."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cortexctl.config import Settings
from cortexctl.core.sandbox import SandboxDefaults
from cortexctl.hub.auth import CredentialCache
from cortexctl.hub.executor import StoreExecutor
from cortexctl.hub.ratelimit import FailureLimiter
from cortexctl.hub.streams import StreamRegistry
from cortexctl.hub.sync_locks import SyncLockRegistry

log = logging.getLogger("cortexctl.hub")


@dataclass(frozen=True)
class HubOptions:
    hub_id: str
    heartbeat_interval_s: float = 5.0
    handshake_deadline_s: float = 2.0
    poll_interval_s: float = 0.5
    auth_failure_limit: int = 20
    presence_flush_s: float = 1.0
    sandbox: SandboxDefaults = SandboxDefaults()
    max_chunk_bytes: int = 1024 * 1024
    max_file_bytes: int = 1024**3
    lock_wait_s: float = 5.0
    lock_ttl_s: float = 600.0
    mirrors_dir: Path = Path("mirrors")
    mirror_retention_s: float = 30 * 86400.0
    lock_gc_interval_s: float = 60.0
    mirror_gc_interval_s: float = 3600.0
    invite_gc_interval_s: float = 3600.0
    invite_retention_s: float = 7 * 86400.0
    journal_gc_interval_s: float = 3600.0
    journal_retention_s: float = 30 * 86400.0

    @classmethod
    def from_settings(cls, settings: Settings, hub_id: str) -> HubOptions:
        return cls(
            hub_id=hub_id,
            heartbeat_interval_s=settings["hub.heartbeat_interval"],
            handshake_deadline_s=settings["hub.handshake_deadline"],
            poll_interval_s=settings["hub.poll_interval"],
            auth_failure_limit=settings["hub.auth_failure_limit"],
            presence_flush_s=settings["jobs.presence_flush_interval"],
            sandbox=sandbox_defaults(settings),
            max_chunk_bytes=settings["sync.max_chunk_bytes"],
            max_file_bytes=settings["sync.max_file_bytes"],
            lock_wait_s=settings["sync.lock_wait"],
            lock_ttl_s=settings["sync.lock_ttl"],
            mirrors_dir=settings.mirrors_dir,
            mirror_retention_s=settings["sync.mirror_retention"],
            lock_gc_interval_s=settings["jobs.lock_gc_interval"],
            mirror_gc_interval_s=settings["jobs.mirror_gc_interval"],
            invite_gc_interval_s=settings["jobs.invite_gc_interval"],
            invite_retention_s=settings["jobs.invite_retention"],
            journal_gc_interval_s=settings["jobs.journal_gc_interval"],
            journal_retention_s=settings["jobs.journal_retention"],
        )


def sandbox_defaults(settings: Settings) -> SandboxDefaults:
    return SandboxDefaults(
        mode=settings["sandbox.default_mode"],
        allowed_commands=tuple(settings["sandbox.default_allowed_commands"]),
        max_runtime_s=int(settings["sandbox.max_runtime"]),
        max_output_bytes=settings["sandbox.max_output_bytes"],
    )


@dataclass
class HubRuntime:
    options: HubOptions
    executor: StoreExecutor
    streams: StreamRegistry
    credentials: CredentialCache
    sync_locks: SyncLockRegistry = field(default_factory=SyncLockRegistry)
    auth_failures: FailureLimiter = field(default_factory=FailureLimiter)
    wake_reconciler: asyncio.Event = field(default_factory=asyncio.Event)
    draining: bool = False
    _background: set[asyncio.Task[Any]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.auth_failures.max_failures = self.options.auth_failure_limit

    @property
    def hub_id(self) -> str:
        return self.options.hub_id

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, kept until done, awaited on shutdown."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def drain_background(self, timeout: float) -> None:
        pending = list(self._background)
        if pending:
            await asyncio.wait(pending, timeout=timeout)
