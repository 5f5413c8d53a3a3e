"""Who may read the hub's files: its data dir, the SQLite store and the mirrors.

The store holds task argv, env and output; the mirrors hold what nodes upload. So nothing
of the hub is readable by other local users: directories 0700, the store (with SQLite's
``-wal``/``-shm``) 0600, mirror files at most 0640 whatever mode a node sends, whatever
the umask. With a hub group (setting ``store.group``) directories are 02770 and files
0660, owned by that group, so operators in it and their cron jobs share the store; the
set-group-id bit makes every file created later (SQLite's included) inherit the group.

Only paths this user owns are changed: an operator in the group running `cortexctl` on a
store the hub's user owns leaves it as it is.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cortexctl.errors import InvalidArgument

SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class HubModes:
    """The modes (and group) of everything the hub writes to disk."""

    gid: int | None = None  # the hub group, or None: private to this user

    @property
    def shared(self) -> bool:
        return self.gid is not None

    @property
    def dir_mode(self) -> int:
        return 0o2770 if self.shared else 0o700

    @property
    def file_mode(self) -> int:
        return 0o660 if self.shared else 0o600

    def mirror_file_mode(self, requested: int) -> int:
        """The mode of an uploaded file: the owner's read/write always, never world, never
        executable; group read only if the node asked for it (or the hub group is set)."""
        if self.shared:
            return 0o660
        return 0o600 | ((requested or 0o644) & 0o040)


PRIVATE = HubModes()


def hub_modes(group: str) -> HubModes:
    """The modes for a `store.group` setting ("" = private): a group name or number."""
    if not group:
        return PRIVATE
    import grp

    try:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise InvalidArgument(
            f"store.group {group!r}: no such group on this machine; create it "
            "(e.g. `groupadd cortex`) or unset store.group"
        ) from None
    return HubModes(gid)


def apply_mode(path: Path, mode: int, modes: HubModes) -> None:
    """Give ``path`` (a file or folder this user owns) ``mode`` and the hub group."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
        return  # not ours to change (see the module docstring); a link is never followed
    if modes.gid is not None and info.st_gid != modes.gid:
        try:
            os.chown(path, -1, modes.gid, follow_symlinks=False)
        except PermissionError:
            raise InvalidArgument(
                f"cannot give {path} to group {modes.gid} (store.group): this user is "
                "not a member of it; add it to the group or unset store.group"
            ) from None
    if stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode, follow_symlinks=False)


def make_dir(path: Path, modes: HubModes = PRIVATE) -> Path:
    """Create ``path`` and any missing parents with the hub's folder mode (umask or not)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
        apply_mode(folder, modes.dir_mode, modes)
    return path


def secure_data_dir(data_dir: Path, modes: HubModes = PRIVATE) -> None:
    """The data dir and its mirrors folder: created if missing, private (or the group's)."""
    make_dir(data_dir, modes)
    apply_mode(data_dir, modes.dir_mode, modes)
    mirrors = data_dir / "mirrors"
    make_dir(mirrors, modes)
    apply_mode(mirrors, modes.dir_mode, modes)


def secure_sqlite_file(database: Path, modes: HubModes = PRIVATE) -> None:
    """Create the SQLite file before SQLite does, with the store's mode.

    SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file, whatever
    the umask, so creating the database file right is what keeps them private too.
    """
    if not database.parent.exists():
        make_dir(database.parent, modes)
    try:
        fd = os.open(
            database, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, modes.file_mode
        )
        os.close(fd)
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM):
            raise
        return  # a group member's store: readable through the group, owned by the hub
    for path in (database, *(Path(f"{database}{side}") for side in SQLITE_SIDE_FILES)):
        apply_mode(path, modes.file_mode, modes)


def write_private(path: Path, text: str, modes: HubModes = PRIVATE) -> None:
    """Write a small file atomically with the hub's file mode."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    apply_mode(tmp, modes.file_mode, modes)
    os.replace(tmp, path)
