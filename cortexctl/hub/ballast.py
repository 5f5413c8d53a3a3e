"""Room kept for a SQLite store on a full disk: the ballast file.

Presence, the hub's lease and task results must still be written when something fills the
store's disk (a log, a core dump, another program: uploads already stop at the free-space
reserve). The hub keeps a file of ``store.disk_ballast`` bytes beside the SQLite store,
its blocks really allocated. The first transaction that meets a full disk (SQLITE_FULL)
removes it: that room is then the store's, and the writes that follow — each is retried
by its caller anyway — fit. A maintenance job puts the ballast back once the disk again
has its size free above the reserve. What the ballast cannot do: once the disk is full
again after its release, writes fail (logged once per condition) until room comes back.

PostgreSQL's disk is another machine's concern: no ballast there.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from pathlib import Path
from typing import Any

from cortexctl.core.diskspace import read_space
from cortexctl.errors import StoreFull, Unavailable
from cortexctl.units import format_size

log = logging.getLogger("cortexctl.hub")
SUFFIX = ".ballast"
_CHUNK = 1 << 20


class Ballast:
    """The ballast file of one SQLite store; thread-safe (released on store workers)."""

    def __init__(self, path: Path, size: int, reserve: str) -> None:
        self.path = path
        self.size = size
        self.reserve = reserve
        self.released = False  # by a full disk, until put back
        self.releases = 0
        self._lock = threading.Lock()

    @classmethod
    def beside(cls, store_file: Path, size: int, reserve: str) -> Ballast:
        return cls(store_file.with_name(store_file.name + SUFFIX), size, reserve)

    def held_bytes(self) -> int:
        """The blocks the ballast file holds now (0 if it is not there)."""
        try:
            return self.path.stat().st_blocks * 512
        except OSError:
            return 0

    def ensure(self) -> bool:
        """Create the ballast (or complete it) if the disk has room for it above the
        reserve; True when it is in place, UNAVAILABLE if the file cannot be written.
        Blocks: run it on a worker thread."""
        with self._lock:
            held = self.held_bytes()
            if held >= self.size:
                self.released = False
                return True
            reading = read_space(self.path, self.reserve)
            if reading.free_bytes - (self.size - held) < reading.reserve_bytes:
                return False
            try:
                _allocate(self.path, self.size)
            except OSError as err:
                raise Unavailable(
                    f"could not put the store's disk ballast {self.path}: {err.strerror or err}"
                ) from None
            if self.released:
                log.info(
                    "the store's disk has room again: put back its %s ballast %s",
                    format_size(self.size),
                    self.path,
                )
            self.released = False
            return True

    def release(self, cause: StoreFull | None = None) -> bool:
        """Remove the ballast so that the store can use its room; True if it was there."""
        with self._lock:
            if self.released:
                return False
            self.released = True
            try:
                self.path.unlink()
            except FileNotFoundError:
                return False
            except OSError as err:
                log.error("could not remove the store's disk ballast %s: %s", self.path, err)
                return False
            self.releases += 1
        log.warning(
            "the store's disk is full (%s): released its %s ballast %s so that presence, "
            "the hub's lease and task results can still be written; free room on that disk "
            "(the ballast is put back once it has %s free above the reserve)",
            cause or "database or disk is full",
            format_size(self.size),
            self.path,
            format_size(self.size),
        )
        return True

    def view(self) -> dict[str, Any]:
        return {"path": str(self.path), "bytes": self.size, "released": self.released}


def _allocate(path: Path, size: int) -> None:
    """Write ``path`` with ``size`` bytes of real blocks (fallocate, else zeros), whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            zeros = bytes(_CHUNK)
            written = 0
            while written < size:
                written += os.write(fd, zeros[: min(_CHUNK, size - written)])
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
