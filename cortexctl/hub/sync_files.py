"""SyncFile: one file up from a node into its mirror, as PROTOCOL.md's SyncFile rules say.

The handler takes the (node, path) lock from the SyncLockRegistry, buffers chunks and
hands them to the executor about a megabyte at a time (a thread hop per chunk costs
throughput), and on the final chunk verifies size and sha256 before the file is fsynced and
renamed into place. Whatever ends the stream — final chunk, error, cancellation,
disconnect, hub shutdown — the lock is released at once and a background task removes the
temporary file and deletes the upload's lease.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from cortexctl.core import locks
from cortexctl.core.mirrors import DEFAULT_MODE, PartFile, check_sha256, check_sync_path
from cortexctl.errors import (
    Aborted,
    DataLoss,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from cortexctl.hub.auth import NodeIdentity
from cortexctl.hub.runtime import HubRuntime
from cortexctl.hub.sync_locks import HeldLock
from cortexctl.proto import mesh_pb2 as pb

log = logging.getLogger("cortexctl.hub.sync")

WRITE_BATCH_BYTES = 1024 * 1024
DISK_TIMEOUT_S = 120.0
LEASE_TIMEOUT_S = 30.0
# A stream that sends nothing holds its path's lock; past this it is given up.
MAX_IDLE_S = 60.0
CLEANUP_ATTEMPTS = 8


@dataclass(eq=False)
class _Upload:
    lock: HeldLock
    part: PartFile
    writing: asyncio.Future[None] | None = None
    committed: bool = False


class _Outcome:
    """A disk call's result or error, carried out of the executor without raising there.

    If the upload is cancelled while its call runs, nobody awaits the executor's inner
    future; an exception left in it would be logged as never retrieved.
    """

    __slots__ = ("value", "error")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        try:
            self.value = fn(*args)
        except Exception as err:
            self.error = err

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def _consume(future: asyncio.Future[Any]) -> None:
    """Cancel a write nobody will await, and retrieve its outcome so none is lost."""
    if not future.done():
        future.cancel()
    future.add_done_callback(lambda f: None if f.cancelled() else f.exception())


class LeaseWriter:
    """Writes upload leases in batches, one transaction per batch, off the event loop.

    One transaction per upload start and end would, with a few uploads in parallel, have
    the store's writers queue on its write lock and starve the executor that file writes
    share. Changes are applied in the order they were made; a flush task runs only while
    there is something to write, so nothing lingers after shutdown drains.
    """

    def __init__(self, runtime: HubRuntime) -> None:
        self.rt = runtime
        self._starts: list[HeldLock] = []
        self._ends: list[HeldLock] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0

    def start(self, lock: HeldLock) -> None:
        self._starts.append(lock)
        self._kick()

    def end(self, lock: HeldLock) -> None:
        self._ends.append(lock)
        self._kick()

    async def flushed(self) -> None:
        """Return once every change made so far is written (or given up on)."""
        while self._flusher is not None:
            await asyncio.wait([self._flusher])

    def _kick(self) -> None:
        if self._flusher is None:
            self._flusher = self.rt.spawn(self._flush(), "sync-lease-writer")

    async def _flush(self) -> None:
        try:
            while self._starts or self._ends:
                starts, self._starts = self._starts, []
                ends, self._ends = self._ends, []
                await self._write(starts, ends)
        finally:
            self._flusher = None

    async def _write(self, starts: list[HeldLock], ends: list[HeldLock]) -> None:
        hub_id = self.rt.hub_id
        begun = [
            locks.LeaseStart(held.node_id, held.path, held.sync_id, hub_id, held.temp_path)
            for held in starts
        ]
        ended = [locks.LeaseEnd(held.node_id, held.path, held.sync_id) for held in ends]
        for number in range(CLEANUP_ATTEMPTS):
            try:
                await self.rt.executor.session(
                    locks.apply_lease_changes, begun, ended, write=True, timeout=LEASE_TIMEOUT_S
                )
            except Unavailable:
                await asyncio.sleep(0.1 * 2**number)
                continue
            except Exception:
                log.exception("could not write %d upload lease change(s)", len(begun) + len(ended))
                return  # `gc locks` and `gc mirrors` are the safety net
            self.batches += 1
            for held in starts:
                held.leased = True
            return
        log.error("gave up writing %d upload lease change(s)", len(begun) + len(ended))


class SyncFileHandler:
    def __init__(self, runtime: HubRuntime) -> None:
        self.rt = runtime
        self.locks = runtime.sync_locks
        self.leases = LeaseWriter(runtime)
        self.mirrors_dir = runtime.options.mirrors_dir.absolute()
        self.idle_s = min(MAX_IDLE_S, max(1.0, runtime.options.lock_ttl_s / 2))
        self.completed = 0
        self.failed = 0
        self.in_flight = 0  # read by the metrics collector, like bytes_received
        self.bytes_received = 0

    async def receive(
        self,
        who: NodeIdentity,
        chunks: AsyncIterator[pb.FileChunk],
        context: Any = None,
    ) -> pb.FileSyncResult:
        """Receive one upload from an authenticated node; raise a typed error to refuse it."""
        if self.rt.draining:
            raise Unavailable("the hub is shutting down; upload again shortly")
        opts = self.rt.options
        iterator = chunks.__aiter__()
        try:
            async with asyncio.timeout(self.idle_s):
                first = await anext(iterator, None)
        except TimeoutError:
            raise Aborted(f"no chunk arrived within {self.idle_s:g}s") from None
        if first is None:
            raise InvalidArgument("empty upload: send at least one chunk, the last with is_final")
        parts = check_sync_path(first.path)
        if first.total_size > opts.max_file_bytes:
            raise ResourceExhausted(
                f"{first.path!r} is {first.total_size} bytes; this hub takes files of at "
                f"most {opts.max_file_bytes} bytes (max_file_bytes)"
            )
        sync_id = uuid.uuid4().hex
        part = PartFile(self.mirrors_dir / who.node_id, parts, sync_id)
        lock = await self.locks.acquire(who.node_id, part.path, sync_id, opts.lock_wait_s)
        lock.temp_path = str(part.temp_path)
        upload = _Upload(lock, part)
        self.in_flight += 1
        try:
            self.leases.start(lock)
            result = await self._receive(upload, first, iterator)
            self.completed += 1
            return result
        except BaseException:
            self.failed += 1
            raise
        finally:
            self.in_flight -= 1
            self.locks.release(lock)
            if upload.writing is not None:
                _consume(upload.writing)
            if upload.committed:
                self.leases.end(lock)
            else:
                self.rt.spawn(self._discard(upload), f"sync-end-{sync_id}")

    async def _receive(
        self, upload: _Upload, first: pb.FileChunk, iterator: AsyncIterator[pb.FileChunk]
    ) -> pb.FileSyncResult:
        opts = self.rt.options
        lock = upload.lock
        path = lock.path
        announced = first.total_size or None  # 0 means "not given" in proto3
        mode = (first.mode & 0o777) or DEFAULT_MODE
        received = 0
        pending: list[bytes] = []
        pending_bytes = 0
        loop = asyncio.get_running_loop()
        chunk = first
        try:
            async with asyncio.timeout(self.idle_s) as idle:
                while True:
                    if chunk.path and chunk.path != path:
                        raise InvalidArgument(
                            f"chunk names {chunk.path!r} in the upload of {path!r}; "
                            "one stream carries one file"
                        )
                    if chunk.offset != received:
                        raise InvalidArgument(
                            f"chunk of {path!r} at offset {chunk.offset}: expected offset "
                            f"{received}, the bytes received so far"
                        )
                    data = chunk.data  # each access copies the bytes out of the message
                    size = len(data)
                    if size > opts.max_chunk_bytes:
                        raise ResourceExhausted(
                            f"chunk of {size} bytes for {path!r}: at most "
                            f"{opts.max_chunk_bytes} bytes per chunk (max_chunk_bytes)"
                        )
                    if received + size > opts.max_file_bytes:
                        raise ResourceExhausted(
                            f"{path!r} grew past {opts.max_file_bytes} bytes, the largest "
                            "file this hub takes (max_file_bytes)"
                        )
                    if announced is not None and received + size > announced:
                        raise DataLoss(
                            f"size mismatch for {path!r}: announced {announced} bytes, "
                            f"received more; nothing was written"
                        )
                    if size:
                        pending.append(data)
                        pending_bytes += size
                        received += size
                        lock.bytes_received = received
                        self.bytes_received += size
                    if chunk.is_final:
                        break
                    if pending_bytes >= WRITE_BATCH_BYTES:
                        await self._flush(upload, pending)
                        pending, pending_bytes = [], 0
                    next_chunk = await anext(iterator, None)
                    if next_chunk is None:
                        raise InvalidArgument(
                            f"the upload of {path!r} ended without a final chunk "
                            "(is_final); nothing was written"
                        )
                    chunk = next_chunk
                    idle.reschedule(loop.time() + self.idle_s)
        except TimeoutError:
            raise Aborted(
                f"no chunk of {path!r} arrived within {self.idle_s:g}s; upload given up"
            ) from None
        sha256 = check_sha256(chunk.sha256)
        if upload.writing is not None:
            writing, upload.writing = upload.writing, None
            await writing
        outcome = await self.rt.executor.run(
            _Outcome,
            upload.part.commit,
            pending,
            sha256,
            announced,
            mode,
            timeout=DISK_TIMEOUT_S,
            what="the mirror disk",
        )
        size, digest = outcome.result()
        upload.committed = True
        log.debug("node %s uploaded %s (%d bytes)", lock.node_id, path, size)
        return pb.FileSyncResult(path=path, size=size, sha256=digest)

    async def _flush(self, upload: _Upload, blocks: list[bytes]) -> None:
        """Start writing ``blocks`` once the previous write is done (one in flight)."""
        if upload.writing is not None:
            writing, upload.writing = upload.writing, None
            await writing
        upload.writing = asyncio.ensure_future(self._write(upload.part, blocks))

    async def _write(self, part: PartFile, blocks: list[bytes]) -> None:
        outcome = await self.rt.executor.run(
            _Outcome, part.write, blocks, timeout=DISK_TIMEOUT_S, what="the mirror disk"
        )
        outcome.result()

    async def _discard(self, upload: _Upload) -> None:
        """After a failed upload: remove the temp file (retrying), then end the lease."""
        removed = await self._retry(
            lambda: self._discard_once(upload.part),
            f"remove the partial upload {upload.lock.temp_path}",
        )
        if removed:  # else the lease stays, so `gc locks` finds the file it names
            self.leases.end(upload.lock)
            # This task is what shutdown drains; it ends only once the lease is gone.
            await self.leases.flushed()

    async def _discard_once(self, part: PartFile) -> None:
        outcome = await self.rt.executor.run(
            _Outcome, part.discard, timeout=DISK_TIMEOUT_S, what="the mirror disk"
        )
        outcome.result()

    async def _retry(self, attempt: Callable[[], Any], what: str) -> bool:
        for number in range(CLEANUP_ATTEMPTS):
            try:
                await attempt()
                return True
            except Unavailable:
                await asyncio.sleep(0.1 * 2**number)
            except Exception:
                log.exception("could not %s; `cortexctl gc locks` will", what)
                return False
        log.error("could not %s after %d attempts; `cortexctl gc locks` will", what, number + 1)
        return False
