"""Per-node mirrors: the file records in the store, and the hub's disk under them.

Each file a hub holds has a record (node, path, size, sha256, hub, time), written when its
upload completes and removed with the file, so `mirrors ls` is complete from any host and
says which hub holds each file. The disk half (`mirrors rm`, `gc mirrors`) acts on the
mirrors folder of the host it runs on, and on the records of what it removed there.
Path confinement and the upload's part file are `core.uploads`. Everything here blocks:
the hub runs it on its executor, the CLI calls it directly.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from sqlalchemy import Table, bindparam, delete, func, select
from sqlalchemy.orm import Session

from cortexctl.core import clock, hubs, locks, nodes
from cortexctl.core.uploads import TEMP_NAME, check_sync_path
from cortexctl.core.views import MirrorFile as MirrorFile
from cortexctl.core.views import MirrorListing as MirrorListing
from cortexctl.core.views import MirrorRemoval as MirrorRemoval
from cortexctl.core.views import RemovedPath as RemovedPath
from cortexctl.errors import InvalidArgument, NotFound
from cortexctl.store.models import MirrorFile as FileRow

NODE_DIR = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
HUB_ID_FILE = re.compile(r"^hub_id(\.[0-9]+)?$")
RECORDS = cast(Table, FileRow.__table__)


# --- file records --------------------------------------------------------------------------


@dataclass(frozen=True)
class FileRecord:
    """A file that became visible in a node's mirror on a hub's disk."""

    node_id: str
    path: str
    size: int
    sha256: str  # "" when the file was found on disk, not uploaded since records began
    hub_id: str


def record_files(session: Session, records: Sequence[FileRecord], *, replace: bool = True) -> None:
    """Upsert the records of completed uploads, in the caller's transaction (one statement).

    ``replace=False`` only adds what has no record yet (files found on a hub's disk).
    """
    if not records:
        return
    now = clock.now()
    statement = locks.dialect_insert(session)(RECORDS)
    if replace:
        statement = statement.on_conflict_do_update(
            index_elements=["node_id", "path"],
            set_={
                key: statement.excluded[key] for key in ("size", "sha256", "hub_id", "updated_at")
            },
        )
    else:
        statement = statement.on_conflict_do_nothing(index_elements=["node_id", "path"])
    latest = {(item.node_id, item.path): item for item in records}  # one row per key
    session.execute(
        statement,
        [
            {
                "node_id": item.node_id,
                "path": item.path,
                "size": item.size,
                "sha256": item.sha256,
                "hub_id": item.hub_id,
                "updated_at": now,
            }
            for item in latest.values()
        ],
    )


def forget_files(session: Session, node_id: str, paths: Collection[str]) -> int:
    """Remove the records of these files of a node (their files were removed)."""
    if not paths:
        return 0
    result = session.execute(
        delete(RECORDS).where(
            RECORDS.c.node_id == bindparam("k_node"), RECORDS.c.path == bindparam("k_path")
        ),
        [{"k_node": node_id, "k_path": path} for path in dict.fromkeys(paths)],
    )
    return max(0, int(getattr(result, "rowcount", 0) or 0))


def forget_node(session: Session, node_id: str, hub_ids: Collection[str] | None = None) -> int:
    """Remove a node's records (only those of ``hub_ids`` when given); return how many."""
    query = delete(RECORDS).where(RECORDS.c.node_id == node_id)
    if hub_ids is not None:
        query = query.where(RECORDS.c.hub_id.in_(list(hub_ids)))
    return max(0, int(getattr(session.execute(query), "rowcount", 0) or 0))


def local_hub_ids(data_dir: Path) -> frozenset[str]:
    """The hubs whose mirrors are this host's folder: the ids kept in its data dir (one per
    process of `serve --processes N`)."""
    found = set()
    try:
        entries = list(os.scandir(data_dir))
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()
    for entry in entries:
        if HUB_ID_FILE.match(entry.name):
            with contextlib.suppress(OSError):
                value = Path(entry.path).read_text().strip()
                if value:
                    found.add(value)
    return frozenset(found)


def recorded_elsewhere(
    session: Session, node_id: str, paths: Collection[str], local: Collection[str]
) -> dict[str, str]:
    """{path: hub id} of these paths that a hub other than ``local`` holds."""
    if not paths:
        return {}
    rows = session.execute(
        select(FileRow.path, FileRow.hub_id).where(
            FileRow.node_id == node_id, FileRow.path.in_(list(paths))
        )
    )
    return {path: hub_id for path, hub_id in rows if hub_id not in local}


def node_records(session: Session, node_id: str) -> list[tuple[str, str]]:
    """(path, hub id) of every record of a node."""
    rows = session.execute(select(FileRow.path, FileRow.hub_id).where(FileRow.node_id == node_id))
    return [(path, hub_id) for path, hub_id in rows]


def records_by_hub(session: Session) -> dict[str, int]:
    """How many file records each hub has."""
    rows = session.execute(select(FileRow.hub_id, func.count()).group_by(FileRow.hub_id))
    return {hub_id: int(count) for hub_id, count in rows}


def recorded_nodes(session: Session, hub_ids: Collection[str]) -> set[str]:
    """Nodes with a record of these hubs."""
    rows = session.scalars(
        select(FileRow.node_id).where(FileRow.hub_id.in_(list(hub_ids))).distinct()
    )
    return set(rows)


def forget_hubs(session: Session, hub_ids: Collection[str]) -> int:
    """Remove every record of these hubs (hubs the store no longer knows)."""
    if not hub_ids:
        return 0
    result = session.execute(delete(RECORDS).where(RECORDS.c.hub_id.in_(list(hub_ids))))
    return max(0, int(getattr(result, "rowcount", 0) or 0))


# --- listing -------------------------------------------------------------------------------


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
    """What the hubs hold for a node (by id or name), from the store's file records: every
    hub's files, each with the hub that holds it; never a partial upload."""
    node_id, name = mirror_node(session, mirrors_dir, ref)
    states = {hub.id: hub.state for hub in hubs.list_hubs(session, include_stopped=True)}
    files = [
        MirrorFile(
            row.path,
            row.size,
            row.updated_at,
            row.sha256,
            row.hub_id,
            states.get(row.hub_id, "unknown"),
        )
        for row in session.scalars(
            select(FileRow).where(FileRow.node_id == node_id).order_by(FileRow.path)
        )
    ]
    return MirrorListing(node_id, name, files, sum(item.size for item in files))


def disk_files(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Committed regular files under a node's mirror folder (no partial upload)."""
    for rel, info in walk_files(root):
        if stat.S_ISREG(info.st_mode) and not TEMP_NAME.match(rel.rsplit("/", 1)[-1]):
            yield rel, info


# --- the file-system half of `gc mirrors` ------------------------------------------------


@dataclass
class Removed:
    files: int = 0
    bytes: int = 0
    # Committed files among them, relative to the node's mirror (their records go too).
    paths: list[str] = field(default_factory=list)


def remove_tree(root: Path, *, dry_run: bool, prefix: str = "") -> Removed:
    """Remove a whole node mirror (symlinks are removed, never followed)."""
    removed = Removed()
    for rel, info in walk_files(root):
        removed.files += 1
        removed.bytes += info.st_size if stat.S_ISREG(info.st_mode) else 0
        if stat.S_ISREG(info.st_mode) and not TEMP_NAME.match(rel.rsplit("/", 1)[-1]):
            removed.paths.append(prefix + rel)
    if not dry_run:
        shutil.rmtree(root, ignore_errors=True)
    return removed


def counted_files(root: Path, prefix: str = "") -> Removed:
    """What a folder holds as quota usage counts it: committed regular files only."""
    counted = Removed()
    for rel, info in disk_files(root):
        counted.files += 1
        counted.bytes += info.st_size
        counted.paths.append(prefix + rel)
    return counted


def mirror_node(session: Session, mirrors_dir: Path, ref: str) -> tuple[str, str]:
    """(node id, name) of a mirror, by node id or name; a mirror may outlive its node."""
    try:
        node = nodes.resolve_node(session, ref)
        return node.id, node.name
    except NotFound:
        if not NODE_DIR.match(ref):
            raise
        if not (mirrors_dir / ref).is_dir() and not session.scalar(
            select(func.count()).select_from(FileRow).where(FileRow.node_id == ref)
        ):
            raise
        return ref, ""


def _confined_target(root: Path, path: str) -> Path:
    """The entry at ``path`` in a node's mirror, reached without following any symlink."""
    parts = check_sync_path(path)
    current = root
    for name in parts[:-1]:
        current = current / name
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            raise NotFound(f"{path!r} is not in the mirror") from None
        if not stat.S_ISDIR(mode):  # a symlink or a file: never walked through
            raise InvalidArgument(f"{path!r}: {name!r} is not a folder of the mirror")
    target = current / parts[-1]
    try:
        os.lstat(target)
    except FileNotFoundError:
        raise NotFound(f"{path!r} is not in the mirror") from None
    return target


@dataclass(frozen=True)
class MirrorFileRef:
    """One committed file of a node's mirror, found for a download."""

    node_id: str
    node_name: str
    path: str
    size: int
    mtime: datetime
    location: Path


def find_mirror_file(session: Session, mirrors_dir: Path, ref: str, path: str) -> MirrorFileRef:
    """The committed regular file at ``path`` of a node's mirror, confined as uploads are
    (no symlink walked through or named, no partial upload)."""
    node_id, name = mirror_node(session, mirrors_dir, ref)
    target = _confined_target(mirrors_dir / node_id, path)
    info = os.lstat(target)
    if not stat.S_ISREG(info.st_mode) or TEMP_NAME.match(target.name):
        raise InvalidArgument(f"{path!r} is not a file of the mirror (a folder or a link?)")
    mtime = datetime.fromtimestamp(info.st_mtime, UTC)
    return MirrorFileRef(node_id, name, path, info.st_size, mtime, target)


def open_mirror_file(location: Path) -> int:
    """A read-only descriptor of a file found by ``find_mirror_file`` (a symlink put in its
    place since is refused): a download reads one file from start to end, even if an
    upload replaces it meanwhile."""
    try:
        return os.open(location, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise NotFound(f"{location.name!r} left the mirror") from None
    except OSError as err:
        raise InvalidArgument(f"cannot read {location.name!r}: {err.strerror}") from None


def read_chunk(fd: int, offset: int, size: int) -> bytes:
    """Up to ``size`` bytes from ``offset`` (b"" at the end)."""
    return os.pread(fd, size, offset)


def remove_paths(
    mirrors_dir: Path, node_id: str, node_name: str, paths: Sequence[str], *, dry_run: bool
) -> MirrorRemoval:
    """Remove files or folders of a node's mirror (all of it without ``paths``).

    Paths are confined like uploads (relative, no ``..``, no symlink walked through); a
    symlink named is removed, never followed. Every path is checked before anything goes.
    ``files``/``bytes`` count committed regular files, as the quota does.
    """
    root = mirrors_dir / node_id
    if not paths:
        if not root.is_dir():
            return MirrorRemoval(node_id, node_name, [], 0, 0, dry_run)
        counted = counted_files(root)
        if not dry_run:
            shutil.rmtree(root, ignore_errors=True)
        removed = [RemovedPath("", counted.files, counted.bytes)]
        return MirrorRemoval(
            node_id,
            node_name,
            removed,
            counted.files,
            counted.bytes,
            dry_run,
            _paths=counted.paths,
        )
    targets = {path: _confined_target(root, path) for path in dict.fromkeys(paths)}
    removed = []
    removed_paths: list[str] = []
    for path, target in targets.items():
        mode = os.lstat(target).st_mode
        if stat.S_ISDIR(mode):
            counted = counted_files(target, prefix=path + "/")
            if not dry_run:
                shutil.rmtree(target, ignore_errors=True)
        else:
            regular = stat.S_ISREG(mode) and not TEMP_NAME.match(target.name)
            size = os.lstat(target).st_size if regular else 0
            counted = Removed(1 if regular else 0, size, [path] if regular else [])
            if not dry_run:
                with contextlib.suppress(FileNotFoundError):
                    target.unlink()
        removed.append(RemovedPath(path, counted.files, counted.bytes))
        removed_paths += counted.paths
    return MirrorRemoval(
        node_id,
        node_name,
        removed,
        sum(item.files_removed for item in removed),
        sum(item.bytes_removed for item in removed),
        dry_run,
        _paths=removed_paths,
    )


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
