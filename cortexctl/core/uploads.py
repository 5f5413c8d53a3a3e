"""A node's upload into its mirror: path confinement and the part file.

Layout: ``<mirrors>/<node_id>/<path>``. An upload writes ``.cortex-sync.<sync id>.tmp``
beside its target and renames it into place only once size and sha256 are verified, so
nothing half-written is ever visible at a final path. Everything here blocks: the hub runs
it on its executor. No database here: listing and GC of mirrors are `core.mirrors`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from cortexctl.core.permissions import PRIVATE, HubModes, apply_mode, make_dir
from cortexctl.errors import (
    Conflict,
    CortexError,
    DataLoss,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)

MAX_PATH_BYTES = 1024  # the lease's primary key column is String(1024)
MAX_NAME_BYTES = 255  # NAME_MAX on the file systems we run on
TEMP_NAME = re.compile(r"^\.cortex-sync\.[0-9a-f]{32}\.tmp$")
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


def ensure_parent(root: Path, parts: Sequence[str], modes: HubModes = PRIVATE) -> Path:
    """Create the folders above ``parts`` inside ``root``; refuse any that lead outside.

    Every component is lstat-ed on the way down, so only a symlink met there needs the
    (slower) realpath check. Folders get the hub's mode (0700, or 02770 with a hub group).
    """
    if not root.is_dir():
        make_dir(root, modes)
    current = root
    linked = False
    for name in parts[:-1]:
        current = current / name
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):
                os.mkdir(current, 0o700)
                apply_mode(current, modes.dir_mode, modes)  # whatever the umask
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

    def __init__(
        self, node_root: Path, parts: Sequence[str], sync_id: str, modes: HubModes = PRIVATE
    ) -> None:
        self.node_root = node_root
        self.modes = modes
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
            raise Conflict(f"the upload of {self.path!r} has already ended")
        for attempt in range(2):
            try:
                ensure_parent(self.node_root, self.parts, self.modes)
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
        self,
        blocks: Sequence[bytes],
        sha256: str,
        size: int | None,
        mode: int,
        before_rename: BeforeRename | None = None,
    ) -> tuple[int, str]:
        """Write the last blocks, verify, fsync and rename into place; (size, sha256).

        ``before_rename(size, replaced_size)`` runs once the file is verified, just before
        it becomes visible (``replaced_size``: the file it replaces, None if new); it may
        refuse by raising, and returns what undoes it should the rename fail.
        """
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
                # Whatever mode the node asked for: never world-readable, never executable.
                os.fchmod(fd, self.modes.mirror_file_mode(mode))
                if self.modes.gid is not None:
                    os.fchown(fd, -1, self.modes.gid)
                os.fsync(fd)
                os.close(fd)
                self._fd = None
                _check_target(self.node_root, self.parts, self.final_path)
            except OSError as err:
                raise _os_error(err, self.path) from None
            undo = None
            if before_rename is not None:
                undo = before_rename(self.written, regular_size(self.final_path))
            try:
                os.replace(self.temp_path, self.final_path)
            except OSError as err:
                if undo is not None:
                    undo()
                raise _os_error(err, self.path) from None
            self._ended = self._committed = True
            try:
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


BeforeRename = Callable[[int, int | None], Callable[[], None] | None]


def regular_size(path: Path) -> int | None:
    """The size of the regular file at ``path`` (never followed), None if there is none."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


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
