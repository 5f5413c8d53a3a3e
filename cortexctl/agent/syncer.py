"""Workspace sync for the node agent: new or changed files up into the node's hub mirror.

Files stream in chunks of the hub's announced ``max_chunk_bytes``, read and hashed one
chunk at a time off the event loop, so memory stays bounded whatever the file size.
Symlinks are never followed; what cannot be read is skipped with one warning (until it
changes). The scanner remembers size, mtime and sha256 of what the hub has, and sends only
files whose size or mtime changed and whose content did too.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from cortexctl.errors import CortexError
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc

log = logging.getLogger("cortexctl.agent.sync")

PARALLEL_UPLOADS = 4
# Refusals that will repeat until the file changes: do not resend every scan.
PERMANENT_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
RESERVED_PREFIX = ".cortex-sync."


class SkipFile(CortexError):
    """A file the agent cannot or must not send (symlink, unreadable, not regular...)."""


@dataclass(frozen=True)
class UploadResult:
    path: str
    size: int
    sha256: str
    mtime_ns: int = 0


@dataclass(frozen=True)
class FailedUpload:
    path: str
    error: str


@dataclass
class SyncReport:
    uploaded: list[UploadResult] = field(default_factory=list)
    unchanged: int = 0
    failed: list[FailedUpload] = field(default_factory=list)


def _open_no_follow(workspace: Path, rel: str) -> int:
    """Open ``workspace/rel`` for reading without following a symlink at any level."""
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise SkipFile(f"{rel!r} is not a plain path inside the workspace")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    current = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            following = os.open(part, flags | os.O_DIRECTORY, dir_fd=current)
            os.close(current)
            current = following
        return os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=current)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise SkipFile(f"{rel}: is a symlink or under one; symlinks are not followed") from None
        if err.errno == errno.ENOENT:
            raise SkipFile(f"{rel}: no such file") from None
        raise SkipFile(f"{rel}: cannot read it ({err.strerror})") from None
    finally:
        os.close(current)


def _read_hashed(fd: int, size: int, hasher: Any) -> bytes:
    parts = []
    left = size
    while left:
        data = os.read(fd, left)
        if not data:
            break
        parts.append(data)
        left -= len(data)
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    hasher.update(data)
    return data


def _hash_file(workspace: Path, rel: str, block: int = 1024 * 1024) -> str:
    fd = _open_no_follow(workspace, rel)
    try:
        hasher = hashlib.sha256()
        while _read_hashed(fd, block, hasher):
            pass
        return hasher.hexdigest()
    finally:
        os.close(fd)


async def _send(call: Any, chunk: pb.FileChunk) -> None:
    try:
        await call.write(chunk)
    except asyncio.InvalidStateError:
        await call  # the hub ended the upload early: raise its status
        raise


async def upload_file(
    stub: pb_grpc.AgentOrchestratorStub,
    credential: str,
    workspace: Path,
    rel: str,
    *,
    max_chunk_bytes: int,
    max_file_bytes: int,
) -> UploadResult:
    """Upload one file of the workspace; raise SkipFile or grpc.aio.AioRpcError."""
    try:
        fd = await asyncio.to_thread(_open_no_follow, workspace, rel)
    except OSError as err:
        raise SkipFile(f"{rel}: cannot read it ({err.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SkipFile(f"{rel}: not a regular file")
        size = info.st_size
        if max_file_bytes and size > max_file_bytes:
            raise SkipFile(f"{rel}: {size} bytes is over the hub's limit of {max_file_bytes}")
        chunk_size = max(1, max_chunk_bytes or 1024 * 1024)
        hasher = hashlib.sha256()
        call = stub.SyncFile(metadata=[("authorization", f"Bearer {credential}")])
        offset = 0
        try:
            while True:
                want = min(chunk_size, size - offset)
                data = await asyncio.to_thread(_read_hashed, fd, want, hasher) if want else b""
                if len(data) < want:
                    raise SkipFile(f"{rel}: shrank while being read; it is sent again next scan")
                first = offset == 0
                offset += len(data)
                final = offset >= size
                await _send(
                    call,
                    pb.FileChunk(
                        path=rel if first else "",
                        offset=offset - len(data),
                        data=data,
                        is_final=final,
                        sha256=hasher.hexdigest() if final else "",
                        total_size=size if first else 0,
                        mode=stat.S_IMODE(info.st_mode) if first else 0,
                    ),
                )
                if final:
                    break
            await call.done_writing()
            result = await call
        except BaseException:
            call.cancel()
            raise
        return UploadResult(rel, result.size, result.sha256, info.st_mtime_ns)
    finally:
        os.close(fd)


def describe(err: BaseException) -> str:
    if isinstance(err, grpc.aio.AioRpcError):
        return f"hub answered {err.code().name}: {err.details()}"
    return str(err)


async def upload_many(
    stub: pb_grpc.AgentOrchestratorStub,
    credential: str,
    workspace: Path,
    paths: Iterable[str],
    config: pb.NodeConfiguration,
    *,
    parallel: int = PARALLEL_UPLOADS,
    on_done: Callable[[str], None] | None = None,
) -> list[tuple[str, UploadResult | BaseException]]:
    """Upload ``paths`` a few at a time; each path's result or its error, in order."""
    gate = asyncio.Semaphore(parallel)

    async def one(rel: str) -> UploadResult | BaseException:
        async with gate:
            try:
                return await upload_file(
                    stub,
                    credential,
                    workspace,
                    rel,
                    max_chunk_bytes=config.max_chunk_bytes,
                    max_file_bytes=config.max_file_bytes,
                )
            except (SkipFile, grpc.aio.AioRpcError) as err:
                return err
            finally:
                if on_done is not None:
                    on_done(rel)

    ordered = list(paths)
    results = await asyncio.gather(*(one(rel) for rel in ordered))
    return list(zip(ordered, results, strict=True))


# --- the workspace scanner ------------------------------------------------------------------


@dataclass
class _Known:
    size: int
    mtime_ns: int
    sha256: str


def scan_workspace(workspace: Path) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """({path: (size, mtime_ns)} of regular files, {path: problem}); symlinks skipped."""
    files: dict[str, tuple[int, int]] = {}
    problems: dict[str, str] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(workspace / rel if rel else workspace) as entries:
                listed = list(entries)
        except OSError as err:
            problems[rel or "."] = f"{rel or '.'}: cannot list it ({err.strerror}); skipped"
            continue
        for entry in listed:
            child = f"{rel}/{entry.name}" if rel else entry.name
            try:
                if entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(child)
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone between listing and stat
            if "\\" in entry.name or entry.name.startswith(RESERVED_PREFIX):
                problems[child] = f"{child}: the hub cannot store this name; skipped"
                continue
            if len(child.encode("utf-8", "surrogateescape")) > 1024:
                problems[child] = f"{child[:80]}...: path longer than 1024 bytes; skipped"
                continue
            files[child] = (info.st_size, info.st_mtime_ns)
    return files, problems


class WorkspaceSyncer:
    """Keeps the hub's mirror of a workspace current: everything on connect, then changes."""

    def __init__(
        self, workspace: Path, interval_s: float, parallel: int = PARALLEL_UPLOADS
    ) -> None:
        self.workspace = workspace
        self.interval_s = interval_s
        self.parallel = parallel
        self.hub_id = ""
        self.known: dict[str, _Known] = {}
        self.refused: dict[str, tuple[int, int]] = {}  # path -> (size, mtime) refused for good
        self.problems: dict[str, str] = {}
        self.scans = 0

    async def run(
        self, stub: pb_grpc.AgentOrchestratorStub, credential: str, config: pb.NodeConfiguration
    ) -> None:
        """Sync now, then every interval, until cancelled (when the stream ends)."""
        if config.hub_id != self.hub_id:
            # Another hub has another mirror: send everything again.
            self.known.clear()
            self.refused.clear()
            self.hub_id = config.hub_id
        while True:
            try:
                report = await self.sync_once(stub, credential, config)
                if report.uploaded or report.failed:
                    log.info(
                        "synced %d file(s) to the hub (%d failed, %d unchanged)",
                        len(report.uploaded),
                        len(report.failed),
                        report.unchanged,
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("workspace sync failed; trying again in %gs", self.interval_s)
            await asyncio.sleep(self.interval_s)

    async def sync_once(
        self, stub: pb_grpc.AgentOrchestratorStub, credential: str, config: pb.NodeConfiguration
    ) -> SyncReport:
        files, problems = await asyncio.to_thread(scan_workspace, self.workspace)
        self.scans += 1
        # Forget what is gone, so memory follows the workspace instead of only growing.
        for table in (self.known, self.refused):
            for rel in [rel for rel in table if rel not in files]:
                del table[rel]
        report = SyncReport()
        todo = []
        for rel, signature in files.items():
            known = self.known.get(rel)
            if known is not None and (known.size, known.mtime_ns) == signature:
                report.unchanged += 1
            elif self.refused.get(rel) == signature:
                continue
            elif known is not None and await self._same_content(rel, known, signature):
                report.unchanged += 1
            else:
                todo.append(rel)
        for rel, outcome in await upload_many(
            stub, credential, self.workspace, todo, config, parallel=self.parallel
        ):
            if isinstance(outcome, UploadResult):
                self.known[rel] = _Known(outcome.size, outcome.mtime_ns, outcome.sha256)
                report.uploaded.append(outcome)
                continue
            message = describe(outcome)
            report.failed.append(FailedUpload(rel, message))
            permanent = isinstance(outcome, SkipFile) or (
                isinstance(outcome, grpc.aio.AioRpcError) and outcome.code() in PERMANENT_CODES
            )
            if permanent:
                self.refused[rel] = files[rel]
                problems[rel] = f"{rel}: {message}; not sent until it changes"
            else:
                log.warning("could not sync %s: %s; retrying next scan", rel, message)
        self._warn_new(problems)
        return report

    async def _same_content(self, rel: str, known: _Known, signature: tuple[int, int]) -> bool:
        """Touched but unchanged (same sha256): remember the new mtime, send nothing."""
        if signature[0] != known.size:
            return False
        try:
            digest = await asyncio.to_thread(_hash_file, self.workspace, rel)
        except (SkipFile, OSError):
            return False
        if digest != known.sha256:
            return False
        self.known[rel] = _Known(signature[0], signature[1], digest)
        return True

    def _warn_new(self, problems: dict[str, str]) -> None:
        for rel, message in problems.items():
            if self.problems.get(rel) != message:
                log.warning("%s", message)
        self.problems = problems


def workspace_paths(workspace: Path, args: Sequence[str]) -> tuple[list[str], list[FailedUpload]]:
    """Workspace-relative files for `agent sync PATH...` (folders expand, symlinks do not).

    A relative PATH is taken inside the workspace, wherever the command runs; an absolute
    one must lie inside it.
    """
    root = os.path.abspath(workspace)
    found: list[str] = []
    failed: list[FailedUpload] = []
    for arg in args:
        full = os.path.normpath(os.path.join(root, arg))
        rel = os.path.relpath(full, root)
        if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
            failed.append(FailedUpload(arg, f"{arg}: outside the workspace {root}"))
            continue
        try:
            info = os.lstat(full)
        except OSError as err:
            failed.append(FailedUpload(arg, f"{arg}: {err.strerror}"))
            continue
        if stat.S_ISDIR(info.st_mode):
            files, problems = scan_workspace(Path(full))
            prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            found.extend(prefix + name for name in sorted(files))
            failed.extend(FailedUpload(prefix + name, text) for name, text in problems.items())
        else:
            found.append(rel.replace(os.sep, "/"))
    return list(dict.fromkeys(found)), failed


def unchanged_since(
    workspace: Path, rel: str, known: tuple[int, int, str] | None
) -> tuple[int, int, str] | None:
    """``known`` (size, mtime_ns, sha256) updated to now if the file has not changed.

    Same size and mtime: unchanged without reading it. Same size, other mtime: unchanged
    if the sha256 is the same (the new mtime is returned, so it is not hashed again).
    """
    if known is None:
        return None
    try:
        info = os.lstat(workspace / rel)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size != known[0]:
        return None
    if info.st_mtime_ns == known[1]:
        return known
    try:
        digest = _hash_file(workspace, rel)
    except (SkipFile, OSError):
        return None
    return (info.st_size, info.st_mtime_ns, digest) if digest == known[2] else None
