"""Per-node mirrors on the hub's disk: path confinement, the upload's temporary file,
listing, and the file-system half of `gc mirrors`.

Layout: ``<mirrors>/<node_id>/<path>``. An upload writes ``.cortex-sync.<sync id>.tmp``
beside its target and renames it into place only once size and sha256 are verified, so
nothing half-written is ever visible at a final path. Everything here blocks: the hub runs
it on its executor, the CLI calls it directly.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session

from cortexctl.core import nodes
from cortexctl.errors import (
    Aborted,
    CortexError,
    DataLoss,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)

MAX_PATH_BYTES = 1024  # the lease's primary key column is String(1024)
MAX_NAME_BYTES = 255  # NAME_MAX on the file systems we run on
TEMP_NAME = re.compile(r"^\.cortex-sync\.[0-9a-f]{32}\.tmp$")
NODE_DIR = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_MODE = 0o644


def temp_name(sync_id: str) -> str:
    return f".cortex-sync.{sync_id}.tmp"


def check_sync_path(path: str) -> tuple[str, ...]:
    """The components of a node-supplied relative POSIX path, or INVALID_ARGUMENT."""
    shown = path if len(path) <= 200 else path[:200] + "..."
    if not path:
        raise InvalidArgument("empty path: give the file's path relative to the workspace")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidArgument(f"path {shown!r} is longer than {MAX_PATH_BYTES} bytes")
    if "\0" in path:
        raise InvalidArgument(f"path {shown!r} contains a NUL byte")
    if "\\" in path:
        raise InvalidArgument(f"path {shown!r} contains a backslash; use '/' between folders")
    if path.startswith("/"):
        raise InvalidArgument(f"path {shown!r} is absolute; give it relative to the workspace")
    parts = tuple(path.split("/"))
    for part in parts:
        if part == "":
            raise InvalidArgument(f"path {shown!r} has an empty component ('//' or a trailing /)")
        if part in (".", ".."):
            raise InvalidArgument(f"path {shown!r} contains {part!r}; give a plain relative path")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise InvalidArgument(f"path {shown!r} has a name longer than {MAX_NAME_BYTES} bytes")
    if TEMP_NAME.match(parts[-1]):
        raise InvalidArgument(f"path {shown!r} uses a name reserved for the hub's partial uploads")
    return parts


def check_sha256(value: str) -> str:
    """The lower-case hex digest a final chunk carries, or INVALID_ARGUMENT."""
    if not value:
        raise InvalidArgument("the final chunk must carry the sha256 of the whole file")
    digest = value.lower()
    if not SHA256_HEX.match(digest):
        raise InvalidArgument(f"bad sha256 {value[:80]!r}: expected 64 hexadecimal digits")
    return digest


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _os_error(err: OSError, path: str) -> CortexError:
    """A person-readable typed error for a failure on the hub's disk."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResourceExhausted("the hub's mirror disk is full; try again after `gc mirrors`")
    if err.errno in (errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP):
        return InvalidArgument(f"path {path!r} clashes with what the mirror holds ({err.strerror})")
    return Unavailable(f"the hub could not write {path!r} to its mirror ({err.strerror}); retry")


def ensure_parent(root: Path, parts: Sequence[str]) -> Path:
    """Create the folders above ``parts`` inside ``root``; refuse any that lead outside.

    Every component is lstat-ed on the way down, so only a symlink met there needs the
    (slower) realpath check.
    """
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
    current = root
    linked = False
    for name in parts[:-1]:
        current = current / name
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):
                os.mkdir(current, 0o755)
            mode = os.lstat(current).st_mode
        if stat.S_ISLNK(mode):
            linked = True  # none of the hub's doing; it may stay only if it stays inside
            if not _inside(os.path.realpath(current), os.path.realpath(root)):
                raise InvalidArgument(
                    f"path {'/'.join(parts)!r} leads outside the node's mirror (via a symlink)"
                )
        elif not stat.S_ISDIR(mode):
            raise InvalidArgument(
                f"path {'/'.join(parts)!r}: {'/'.join(current.relative_to(root).parts)!r} "
                "is a file in the mirror, not a folder"
            )
    if linked and not _inside(os.path.realpath(current), os.path.realpath(root)):
        raise InvalidArgument(f"path {'/'.join(parts)!r} leads outside the node's mirror")
    return current


def _check_target(root: Path, parts: Sequence[str], target: Path) -> None:
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        if not _inside(os.path.realpath(target), os.path.realpath(root)):
            raise InvalidArgument(f"path {'/'.join(parts)!r} leads outside the node's mirror")
    elif stat.S_ISDIR(mode):
        raise InvalidArgument(f"path {'/'.join(parts)!r} is a folder in the mirror, not a file")


class PartFile:
    """One upload's temporary file beside its target.

    Every method blocks (the hub calls them on its executor) and takes the same lock, so a
    discard waits for a write still running on another thread instead of racing it.
    """

    def __init__(self, node_root: Path, parts: Sequence[str], sync_id: str) -> None:
        self.node_root = node_root
        self.parts = tuple(parts)
        self.path = "/".join(self.parts)
        self.final_path = node_root.joinpath(*self.parts)
        self.temp_path = self.final_path.with_name(temp_name(sync_id))
        self.written = 0
        self._lock = threading.Lock()
        self._hash = hashlib.sha256()
        self._fd: int | None = None
        self._ended = False  # committed or discarded; nothing more may happen
        self._committed = False
        self._created = False

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        if self._ended:
            raise Aborted(f"the upload of {self.path!r} has already ended")
        for attempt in range(2):
            try:
                ensure_parent(self.node_root, self.parts)
                _check_target(self.node_root, self.parts, self.final_path)
                self._fd = os.open(
                    self.temp_path,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                )
                self._created = True
                return self._fd
            except FileNotFoundError:
                if attempt:  # `gc mirrors` removed an empty folder under us twice; give up
                    raise Unavailable(
                        f"the mirror folder of {self.path!r} vanished; retry"
                    ) from None
            except OSError as err:
                raise _os_error(err, self.path) from None
        raise AssertionError("unreachable")

    def _write_locked(self, blocks: Sequence[bytes]) -> None:
        fd = self._open()
        views = [memoryview(block) for block in blocks if block]
        for view in views:
            self._hash.update(view)
        try:
            while views:
                done = os.writev(fd, views)
                self.written += done
                while views and done >= len(views[0]):
                    done -= len(views[0])
                    views.pop(0)
                if done:
                    views[0] = views[0][done:]
        except OSError as err:
            raise _os_error(err, self.path) from None

    def write(self, blocks: Sequence[bytes]) -> None:
        """Append ``blocks`` (hashing them on the way)."""
        with self._lock:
            self._write_locked(blocks)

    def commit(
        self, blocks: Sequence[bytes], sha256: str, size: int | None, mode: int
    ) -> tuple[int, str]:
        """Write the last blocks, verify, fsync and rename into place; (size, sha256)."""
        with self._lock:
            self._write_locked(blocks)
            fd = self._open()  # an empty file has had no write
            digest = self._hash.hexdigest()
            if size is not None and self.written != size:
                raise DataLoss(
                    f"size mismatch for {self.path!r}: announced {size} bytes, "
                    f"received {self.written}; nothing was written"
                )
            if digest != sha256:
                raise DataLoss(
                    f"sha256 mismatch for {self.path!r}: sent {sha256}, received "
                    f"data hashes to {digest}; nothing was written"
                )
            try:
                os.fchmod(fd, mode)
                os.fsync(fd)
                os.close(fd)
                self._fd = None
                _check_target(self.node_root, self.parts, self.final_path)
                os.replace(self.temp_path, self.final_path)
                self._ended = self._committed = True
                _fsync_dir(self.final_path.parent)
            except OSError as err:
                raise _os_error(err, self.path) from None
            return self.written, digest

    def discard(self) -> bool:
        """Close and remove the temporary file unless committed; True if one was removed."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._ended = True
            if self._committed or not self._created:
                return False
            try:
                self.temp_path.unlink()
                return True
            except FileNotFoundError:
                return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temp_file(mirrors_dir: Path, temp_path: str, *, dry_run: bool = False) -> bool:
    """Remove a partial upload named in a lease; only a temp file inside the mirrors."""
    path = Path(temp_path)
    if not path.is_absolute():
        path = mirrors_dir / path
    if not TEMP_NAME.match(path.name):
        return False
    if not _inside(os.path.realpath(path.parent), os.path.realpath(mirrors_dir)):
        return False
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        if not dry_run:
            path.unlink()
        return True
    except FileNotFoundError:
        return False


# --- listing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MirrorFile:
    path: str
    size: int
    mtime: datetime


@dataclass(frozen=True)
class MirrorListing:
    node_id: str
    node_name: str
    files: list[MirrorFile]
    total_bytes: int


def walk_files(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of every non-folder under ``root``, never following symlinks."""
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = sorted(os.scandir(root / rel if rel else root), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        folders = []
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                folders.append(child)
            else:
                try:
                    yield child, entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
        stack.extend(reversed(folders))


def list_mirror(session: Session, mirrors_dir: Path, ref: str) -> MirrorListing:
    """What the hub holds for a node (by id or name), without partial uploads."""
    try:
        node = nodes.resolve_node(session, ref)
        node_id, name = node.id, node.name
    except NotFound:
        # A mirror may outlive its node's row; let an id still find it.
        if not NODE_DIR.match(ref) or not (mirrors_dir / ref).is_dir():
            raise
        node_id, name = ref, ""
    files = [
        MirrorFile(rel, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC))
        for rel, info in walk_files(mirrors_dir / node_id)
        if stat.S_ISREG(info.st_mode) and not TEMP_NAME.match(rel.rsplit("/", 1)[-1])
    ]
    files.sort(key=lambda item: item.path)
    return MirrorListing(node_id, name, files, sum(item.size for item in files))


# --- the file-system half of `gc mirrors` ------------------------------------------------


@dataclass
class Removed:
    files: int = 0
    bytes: int = 0


def remove_tree(root: Path, *, dry_run: bool) -> Removed:
    """Remove a whole node mirror (symlinks are removed, never followed)."""
    removed = Removed()
    for _, info in walk_files(root):
        removed.files += 1
        removed.bytes += info.st_size if stat.S_ISREG(info.st_mode) else 0
    if not dry_run:
        shutil.rmtree(root, ignore_errors=True)
    return removed


def remove_orphan_temps(
    root: Path,
    keep: Collection[str],
    *,
    grace_s: float,
    dry_run: bool,
    now: float | None = None,
) -> list[tuple[str, int]]:
    """Remove temp files under ``root`` that no live upload references: [(path, size)].

    ``keep`` holds absolute temp paths of live uploads. Files younger than ``grace_s``
    are left alone too: an upload's lease is written just after its temp file appears.
    """
    now = time.time() if now is None else now
    removed = []
    for rel, info in walk_files(root):
        if not TEMP_NAME.match(rel.rsplit("/", 1)[-1]) or not stat.S_ISREG(info.st_mode):
            continue
        path = root / rel
        if str(path) in keep or now - info.st_mtime < grace_s:
            continue
        if not dry_run:
            try:
                path.unlink()
            except FileNotFoundError:
                continue
        removed.append((str(path), info.st_size))
    return removed


def remove_empty_dirs(
    root: Path, *, grace_s: float, dry_run: bool, keep_root: bool, now: float | None = None
) -> int:
    """Remove empty folders bottom-up (those changed within ``grace_s`` are left, so a
    folder an upload has just made stays for it); return how many."""
    now = time.time() if now is None else now
    # Ages are taken before anything is removed: removing a child touches its parent.
    old = set()
    for current, _, _ in os.walk(root):
        with contextlib.suppress(OSError):
            if now - os.lstat(current).st_mtime >= grace_s:
                old.add(current)
    removed = 0
    gone: set[str] = set()
    for current, dirs, files, _ in os.fwalk(root, topdown=False, follow_symlinks=False):
        if current == str(root) and keep_root:
            continue
        children = [d for d in dirs if os.path.join(current, d) not in gone]
        if files or children or current not in old:
            continue
        try:
            if not dry_run:
                os.rmdir(current)
        except OSError:
            continue  # something appeared in it, or it went: either way, not ours now
        gone.add(current)
        removed += 1
    return removed


def node_dirs(mirrors_dir: Path) -> list[str]:
    """Names of the node folders in the mirrors directory."""
    try:
        return sorted(
            entry.name for entry in os.scandir(mirrors_dir) if entry.is_dir(follow_symlinks=False)
        )
    except FileNotFoundError:
        return []


# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3


def tune_malloc(max_chunk_bytes: int) -> bool:
    """Keep chunk-sized buffers on the heap instead of an mmap/munmap per message.

    Every received chunk is a fresh buffer of up to max_chunk_bytes; above glibc's mmap
    threshold each one costs an mmap, page faults and a munmap (PERFORMANCE.md trap 5); measured
    on loopback this halves upload throughput, on the sending and the receiving side alike.
    No-op off glibc; True if applied.
    """
    if os.environ.get("CORTEX_MALLOC_TUNING", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    threshold = min(max(4 * max_chunk_bytes + 256 * 1024, 8 * 1024 * 1024), 256 * 1024 * 1024)
    return bool(
        mallopt(M_MMAP_THRESHOLD, threshold)
        and mallopt(M_TRIM_THRESHOLD, 2 * threshold)
        and mallopt(M_TOP_PAD, threshold // 2)
    )
