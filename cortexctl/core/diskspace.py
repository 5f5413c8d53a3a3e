"""The free-space reserve of the mirrors' file system.

Uploads stop while the file system holding the mirrors (and, in the default layout, the
SQLite store) has less than the reserve free, so the store and every admin command
always keep room to work on a "full" disk. ``statvfs`` is cheap but not free: a reading
is kept for a short time and the bytes an upload writes meanwhile are taken off it, so a
check per write batch costs a subtraction, not a system call.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cortexctl.errors import InvalidArgument, ResourceExhausted
from cortexctl.units import BYTES_FORMAT, format_size, parse_bytes

RESERVE_FORMAT = f"a percentage of the file system (e.g. 5%) or {BYTES_FORMAT}"
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
DEFAULT_RESERVE = "5%"
CACHE_S = 0.5


def parse_reserve(value: object) -> str:
    """A reserve as written in config ("5%", "2GiB", 0), checked and normalised."""
    text = str(value).strip()
    match = _PERCENT.match(text)
    if match:
        percent = float(match.group(1))
        if percent >= 100:
            raise InvalidArgument(f"bad reserve {value!r}: a percentage below 100")
        return f"{percent:g}%"
    try:
        return str(parse_bytes(value if isinstance(value, int) else text, what="reserve"))
    except InvalidArgument:
        raise InvalidArgument(f"bad reserve {value!r}: expected {RESERVE_FORMAT}") from None


def reserve_bytes(reserve: str, total_bytes: int) -> int:
    """The reserve in bytes for a file system of ``total_bytes``."""
    match = _PERCENT.match(reserve)
    if match:
        return int(total_bytes * float(match.group(1)) / 100)
    return parse_bytes(reserve)


@dataclass(frozen=True)
class Reading:
    free_bytes: int  # available to unprivileged writers (f_bavail)
    total_bytes: int
    reserve_bytes: int


def read_space(path: Path, reserve: str) -> Reading:
    """statvfs of the file system holding ``path`` (its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    info = os.statvfs(probe)
    total = info.f_blocks * info.f_frsize
    return Reading(info.f_bavail * info.f_frsize, total, reserve_bytes(reserve, total))


def below_reserve_message(reading: Reading, path: Path) -> str:
    return (
        f"the hub's free space is below the reserve: {format_size(max(reading.free_bytes, 0))} "
        f"free on the file system of {path}, reserve {format_size(reading.reserve_bytes)} "
        "(sync.free_space_reserve); uploads resume once `cortexctl gc mirrors` or "
        "`cortexctl mirrors rm` frees room"
    )


class FreeSpaceGuard:
    """Refuses writes that would take the mirrors' file system below its reserve.

    Thread-safe: the hub calls ``check`` from its executor's workers (before each write
    batch) and ``fresh`` from the event loop (to decide whether a reading is needed).
    """

    def __init__(self, path: Path, reserve: str, cache_s: float = CACHE_S) -> None:
        self.path = path
        self.reserve = parse_reserve(reserve)
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._reading: Reading | None = None
        self._read_at = 0.0
        self._spent = 0  # bytes admitted since the reading
        self.refusals = 0

    @property
    def disabled(self) -> bool:
        return self.reserve in ("0", "0%")

    def fresh(self) -> bool:
        return self._reading is not None and time.monotonic() - self._read_at < self.cache_s

    def refresh(self) -> Reading:
        """Take a new reading (blocks: a system call)."""
        reading = read_space(self.path, self.reserve)
        with self._lock:
            self._reading, self._read_at, self._spent = reading, time.monotonic(), 0
        return reading

    def check(self, add_bytes: int = 0) -> None:
        """RESOURCE_EXHAUSTED if writing ``add_bytes`` more would break the reserve.

        Blocks only when the reading is stale. The bytes are counted as spent, so uploads
        running together cannot each take the last room.
        """
        if self.disabled:
            return
        if not self.fresh():
            self.refresh()
        self._admit(add_bytes, spend=True)

    def check_admission(self, announced: int) -> None:
        """At an upload's start, from the last reading: is there room for ``announced``?"""
        if self.disabled or self._reading is None:
            return
        self._admit(announced, spend=False)

    def _admit(self, add_bytes: int, *, spend: bool) -> None:
        with self._lock:
            reading = self._reading
            assert reading is not None
            free = reading.free_bytes - self._spent
            if free - add_bytes < reading.reserve_bytes:
                self.refusals += 1
                shown = Reading(free, reading.total_bytes, reading.reserve_bytes)
                raise ResourceExhausted(below_reserve_message(shown, self.path))
            if spend:
                self._spent += add_bytes
