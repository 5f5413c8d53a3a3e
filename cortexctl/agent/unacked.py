"""Task results the hub has not acknowledged yet, kept on disk until it has.

A terminal result is written to ``<state dir>/results/<task id>.pb`` (temporary name,
fsync, rename) before it is sent, and removed only when a ``TaskUpdateAck`` for it
arrives — accepted, or refused because the task had already ended. So a result survives a
lost stream, a hub that cannot write it yet, and a restart of the agent; it is sent again
on every new stream and, while unanswered, every ``resend_after_s``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from pathlib import Path

from cortexctl.agent.state import fsync_dir
from cortexctl.proto import mesh_pb2 as pb

log = logging.getLogger("cortexctl.agent")
FOLDER = "results"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class UnackedResults:
    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir / FOLDER
        self._held: dict[str, pb.TaskUpdate] = {}
        self._sent_at: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._held

    @property
    def task_ids(self) -> list[str]:
        return list(self._held)

    def _path(self, task_id: str) -> Path:
        return self.folder / f"{_SAFE.sub('_', task_id)}.pb"

    def load(self) -> int:
        """Read what an earlier run of the agent left unacknowledged; return how many."""
        try:
            paths = sorted(self.folder.glob("*.pb"))
        except OSError:
            return 0
        for path in paths:
            try:
                update = pb.TaskUpdate.FromString(path.read_bytes())
            except Exception:  # noqa: BLE001 - a torn or foreign file: nothing to resend
                log.warning("ignoring unreadable result file %s", path)
                path.unlink(missing_ok=True)
                continue
            if update.task_id:
                self._held[update.task_id] = update
        return len(self._held)

    def keep(self, update: pb.TaskUpdate) -> None:
        """Hold ``update`` until acknowledged; on disk too, unless the disk refuses."""
        self._held[update.task_id] = update
        self._sent_at.pop(update.task_id, None)
        path = self._path(update.task_id)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(update.SerializeToString())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            fsync_dir(self.folder)  # the new name survives a crash too
        except OSError as err:
            with contextlib.suppress(OSError):
                tmp.unlink()
            log.warning(
                "could not keep the result of task %s on disk (%s); it is held in memory only",
                update.task_id,
                err.strerror or err,
            )

    def acknowledged(self, task_id: str) -> bool:
        """Forget a result the hub answered; False if it was not held."""
        if self._held.pop(task_id, None) is None:
            return False
        self._sent_at.pop(task_id, None)
        with contextlib.suppress(OSError):
            self._path(task_id).unlink()
        return True

    def all(self) -> list[pb.TaskUpdate]:
        """Every held result (for a new stream), marked as sent now."""
        now = time.monotonic()
        for task_id in self._held:
            self._sent_at[task_id] = now
        return list(self._held.values())

    def due(self, resend_after_s: float) -> list[pb.TaskUpdate]:
        """Held results not sent in the last ``resend_after_s``, marked as sent now."""
        now = time.monotonic()
        due = [
            update
            for task_id, update in self._held.items()
            if now - self._sent_at.get(task_id, 0.0) >= resend_after_s
        ]
        for update in due:
            self._sent_at[update.task_id] = now
        return due

    def mark_sent(self, task_id: str) -> None:
        self._sent_at[task_id] = time.monotonic()
