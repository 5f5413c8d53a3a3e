"""SyncFile: one file up from a node into its mirror, as PROTOCOL.md's SyncFile rules say.

The handler takes the (node, path) lock from the SyncLockRegistry — and, where several
hubs can share the store (PostgreSQL), then the path's store lease, which holds across
hubs (`core.locks.claim_lease`; SQLite takes one hub, so its leases are only written in
batches) — buffers chunks and
hands them to the executor about a megabyte at a time (a thread hop per chunk costs
throughput), and on the final chunk verifies size and sha256 before the file is fsynced and
renamed into place. Whatever ends the stream — final chunk, error, cancellation,
disconnect, hub shutdown — the lock is released at once and a background task removes the
temporary file and deletes the upload's lease. A completed upload's file record (size,
sha256, this hub) is written in the same batch that ends its lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from cortexctl.core import locks, mirrors, quotas
from cortexctl.core.diskspace import FreeSpaceGuard
from cortexctl.core.uploads import (
    DEFAULT_MODE,
    PartFile,
    check_sha256,
    check_sync_path,
    regular_size,
)
from cortexctl.errors import (
    Conflict,
    DataLoss,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from cortexctl.hub.auth import NodeIdentity
from cortexctl.hub.runtime import HubRuntime
from cortexctl.hub.sync_locks import HeldLock
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.store.engine import Store

log = logging.getLogger("cortexctl.hub.sync")

WRITE_BATCH_BYTES = 1024 * 1024
DISK_TIMEOUT_S = 120.0
LEASE_TIMEOUT_S = 30.0
# A stream that sends nothing holds its path's lock; past this it is given up.
MAX_IDLE_S = 60.0
CLEANUP_ATTEMPTS = 8
# Pauses between claims of a path another hub holds (doubling up to the last).
CLAIM_RETRY_S = (0.05, 0.1, 0.2, 0.4)
# A node's quota and usage as read from the store are reused this long for the check at
# the start of an upload (the charge at its end is always exact, in the store).
USAGE_CACHE_S = 1.0
USAGE_CACHE_MAX = 4096


@dataclass(eq=False)
class _Upload:
    lock: HeldLock
    part: PartFile
    usage: quotas.Usage | None = None
    budget: int | None = None  # bytes the quota leaves this file; None: no byte quota
    writing: asyncio.Future[None] | None = None
    committed: bool = False
    usage_delta: tuple[int, int] | None = None  # (bytes, files) to count in a batch
    record: mirrors.FileRecord | None = None  # the completed file, recorded in a batch


class _Charge:
    """Counts a verified file against its node's mirror usage, just before the rename.

    Runs on an executor worker inside ``PartFile.commit``. A node with a quota is charged
    at once with one conditional UPDATE (refusing leaves nothing written); a node without
    one has its usage counted in the next lease batch, off the upload's path.
    """

    def __init__(
        self,
        store: Store,
        upload: _Upload,
        defaults: quotas.QuotaDefaults,
        hub_id: str = "",
        shared: bool = False,
    ) -> None:
        self.store = store
        self.upload = upload
        self.defaults = defaults
        self.hub_id = hub_id
        self.shared = shared  # several hubs: the store lease must still be this upload's

    def __call__(self, size: int, replaced: int | None) -> Callable[[], None] | None:
        lock = self.upload.lock
        node_id = lock.node_id
        add_bytes = size - (replaced or 0)
        add_files = 0 if replaced is not None else 1
        usage = self.upload.usage
        charge = usage is not None and usage.limited
        if not charge:
            self.upload.usage_delta = (add_bytes, add_files)
            if not self.shared:
                return None
        with self.store.session(write=True) as session:
            if self.shared and not locks.confirm_lease(
                session,
                node_id=node_id,
                path=lock.path,
                sync_id=lock.sync_id,
                hub_id=self.hub_id,
            ):
                raise Conflict(
                    f"the upload of {lock.path!r} lost its lease to another hub before it "
                    "could be renamed into place (this hub stalled past the lease, or was "
                    "taken over); nothing was written; upload it again"
                )
            if not charge:
                return None
            quotas.charge(session, node_id, add_bytes, add_files, self.defaults)

        def undo() -> None:
            with self.store.session(write=True) as session:
                quotas.release(session, node_id, add_bytes, add_files)

        return undo


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
        self._usage: dict[str, tuple[int, int]] = {}
        self._records: list[mirrors.FileRecord] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0

    def start(self, lock: HeldLock) -> None:
        self._starts.append(lock)
        self._kick()

    def end(
        self,
        lock: HeldLock,
        usage: tuple[int, int] | None = None,
        record: mirrors.FileRecord | None = None,
    ) -> None:
        """End a lease; ``usage`` (bytes, files) is what the upload adds to its node, and
        ``record`` the file it completed."""
        self._ends.append(lock)
        if record is not None:
            self._records.append(record)
        if usage is not None:
            old = self._usage.get(lock.node_id, (0, 0))
            self._usage[lock.node_id] = (old[0] + usage[0], old[1] + usage[1])
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
                usage, self._usage = self._usage, {}
                records, self._records = self._records, []
                await self._write(starts, ends, usage, records)
        finally:
            self._flusher = None

    async def _write(
        self,
        starts: list[HeldLock],
        ends: list[HeldLock],
        usage: dict[str, tuple[int, int]],
        records: list[mirrors.FileRecord],
    ) -> None:
        hub_id = self.rt.hub_id
        begun = [
            locks.LeaseStart(held.node_id, held.path, held.sync_id, hub_id, held.temp_path)
            for held in starts
        ]
        ended = [locks.LeaseEnd(held.node_id, held.path, held.sync_id) for held in ends]
        for number in range(CLEANUP_ATTEMPTS):
            try:
                await self.rt.executor.session(
                    _apply_changes,
                    begun,
                    ended,
                    usage,
                    records,
                    write=True,
                    timeout=LEASE_TIMEOUT_S,
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


def _apply_changes(
    session: Any,
    begun: list[locks.LeaseStart],
    ended: list[locks.LeaseEnd],
    usage: dict[str, tuple[int, int]],
    records: list[mirrors.FileRecord],
) -> None:
    locks.apply_lease_changes(session, begun, ended)
    mirrors.record_files(session, records)
    for node_id, (add_bytes, add_files) in usage.items():
        quotas.release(session, node_id, -add_bytes, -add_files)


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
        self.space = FreeSpaceGuard(self.mirrors_dir, runtime.options.free_space_reserve)
        # Several hubs can share a PostgreSQL store: there the path's lock is a store lease.
        self.shared = runtime.executor.store.engine.dialect.name == "postgresql"
        self.refused_quota = 0  # uploads refused by a node quota, for metrics
        self._usage: dict[str, tuple[float, quotas.Usage]] = {}

    async def receive(
        self,
        who: NodeIdentity,
        chunks: AsyncIterator[pb.FileChunk],
        context: Any = None,
    ) -> pb.FileSyncResult:
        """Receive one upload from an authenticated node; raise a typed error to refuse it.

        The upload is registered while it runs, so that revoking the node cuts it at once
        (the reconciler cancels it with the error it ends with).
        """
        task = asyncio.current_task()
        assert task is not None
        self.rt.uploads.add(who.node_id, task)
        try:
            return await self._receive_one(who, chunks)
        except asyncio.CancelledError:
            cut = self.rt.uploads.reason(task)
            if cut is None:
                raise
            task.uncancel()
            log.info("cut the upload of node %s: %s", who.node_id, cut)
            raise cut from None
        finally:
            self.rt.uploads.discard(who.node_id, task)

    async def _receive_one(
        self, who: NodeIdentity, chunks: AsyncIterator[pb.FileChunk]
    ) -> pb.FileSyncResult:
        if self.rt.draining:
            raise Unavailable("the hub is shutting down; upload again shortly")
        opts = self.rt.options
        iterator = chunks.__aiter__()
        try:
            async with asyncio.timeout(self.idle_s):
                first = await anext(iterator, None)
        except TimeoutError:
            raise Conflict(f"no chunk arrived within {self.idle_s:g}s") from None
        if first is None:
            raise InvalidArgument("empty upload: send at least one chunk, the last with is_final")
        parts = check_sync_path(first.path)
        if first.total_size > opts.max_file_bytes:
            raise ResourceExhausted(
                f"{first.path!r} is {first.total_size} bytes; this hub takes files of at "
                f"most {opts.max_file_bytes} bytes (max_file_bytes)"
            )
        await self._check_space(first.total_size)
        sync_id = uuid.uuid4().hex
        part = PartFile(self.mirrors_dir / who.node_id, parts, sync_id, opts.modes)
        usage = await self._usage_of(who.node_id)
        budget = await self._admit(usage, part, first.total_size)
        waited = time.monotonic()
        lock = await self.locks.acquire(who.node_id, part.path, sync_id, opts.lock_wait_s)
        lock.temp_path = str(part.temp_path)
        if self.shared:
            try:
                await self._claim(lock, opts.lock_wait_s - (time.monotonic() - waited))
            except BaseException:
                self.locks.release(lock)
                raise
        upload = _Upload(lock, part, usage=usage, budget=budget)
        self.in_flight += 1
        try:
            if not self.shared:
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
                self.leases.end(lock, upload.usage_delta, upload.record)
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
                    if upload.budget is not None and received + size > upload.budget:
                        assert upload.usage is not None
                        self.refused_quota += 1
                        quotas.check_quota(upload.usage, received + size, 0)
                        raise ResourceExhausted(f"{path!r} does not fit the node's mirror quota")
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
            raise Conflict(
                f"no chunk of {path!r} arrived within {self.idle_s:g}s; upload given up"
            ) from None
        sha256 = check_sha256(chunk.sha256)
        if upload.writing is not None:
            writing, upload.writing = upload.writing, None
            await writing
        outcome = await self.rt.executor.run(
            _Outcome,
            self._commit,
            upload,
            pending,
            sha256,
            announced,
            mode,
            timeout=DISK_TIMEOUT_S,
            what="the mirror disk",
        )
        try:
            size, digest = outcome.result()
        except ResourceExhausted:
            self._usage.pop(lock.node_id, None)  # read it afresh next time
            raise
        upload.committed = True
        upload.record = mirrors.FileRecord(lock.node_id, path, size, digest, self.rt.hub_id)
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
            _Outcome,
            self._write_blocks,
            part,
            blocks,
            timeout=DISK_TIMEOUT_S,
            what="the mirror disk",
        )
        outcome.result()

    def _write_blocks(self, part: PartFile, blocks: list[bytes]) -> None:
        """On a worker: keep the free-space reserve, then append (blocks, like PartFile)."""
        self.space.check(sum(len(block) for block in blocks))
        part.write(blocks)

    def _commit(
        self, upload: _Upload, blocks: list[bytes], sha256: str, size: int | None, mode: int
    ) -> tuple[int, str]:
        self.space.check(sum(len(block) for block in blocks))
        charge = _Charge(
            self.rt.executor.store, upload, self.rt.options.quotas, self.rt.hub_id, self.shared
        )
        return upload.part.commit(blocks, sha256, size, mode, before_rename=charge)

    async def _claim(self, lock: HeldLock, wait_s: float) -> None:
        """Take the path's store lease (several hubs), retrying until ``wait_s`` has passed;
        ABORTED then, naming the hub that holds the path.

        Given up (ABORTED, the client cancelling, shutdown), it ends the lease — only once
        a claim still running on a worker has finished, so a claim that lands after the
        upload was given up never outlives it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, wait_s)
        pauses = iter(CLAIM_RETRY_S)
        while True:
            attempt = asyncio.ensure_future(
                self.rt.executor.session(
                    locks.claim_lease,
                    write=True,
                    timeout=LEASE_TIMEOUT_S,
                    node_id=lock.node_id,
                    path=lock.path,
                    sync_id=lock.sync_id,
                    hub_id=self.rt.hub_id,
                    hub_epoch=self.rt.epoch,
                    temp_path=lock.temp_path,
                )
            )
            try:
                holder = await asyncio.shield(attempt)
            except BaseException:
                attempt.add_done_callback(lambda done: self._given_up(lock, done))
                raise
            if holder is None:
                lock.leased = True
                return
            left = deadline - loop.time()
            if left <= 0 and holder.hub_id:
                where = f" ({holder.address})" if holder.address else ""
                raise Conflict(
                    f"{lock.path!r} is being uploaded via hub {holder.hub_id}{where} "
                    f"({holder.bytes_received} bytes so far); gave up after waiting "
                    f"{self.rt.options.lock_wait_s:g}s (sync.lock_wait); retry once that "
                    "upload ends — if that hub died, its lease is freed within "
                    f"{locks.STORE_LEASE_S:g}s, or at once when a survivor recovers it"
                )
            try:
                await asyncio.sleep(max(0.0, min(next(pauses, CLAIM_RETRY_S[-1]), left)))
            except BaseException:
                self.leases.end(lock)
                raise

    def _given_up(self, lock: HeldLock, attempt: asyncio.Future[Any]) -> None:
        """A claim whose upload was given up has finished: end whatever lease it took."""
        if not attempt.cancelled():
            attempt.exception()  # retrieved: it was the upload's error, already raised
        self.leases.end(lock)

    # --- admission: free-space reserve and quota, checked once at the start -------------

    async def _check_space(self, announced: int) -> None:
        """RESOURCE_EXHAUSTED while free space is below the reserve (a reading is cached)."""
        if self.space.disabled:
            return
        if not self.space.fresh():
            await self.rt.executor.run(self.space.refresh, timeout=DISK_TIMEOUT_S, what="statvfs")
        self.space.check_admission(announced)

    async def _usage_of(self, node_id: str) -> quotas.Usage | None:
        """The node's quota and usage, read from the store at most once a second."""
        now = time.monotonic()
        cached = self._usage.get(node_id)
        if cached is not None and now - cached[0] < USAGE_CACHE_S:
            return cached[1]
        usage = await self.rt.executor.session(
            quotas.read_usage, node_id, self.rt.options.quotas, timeout=LEASE_TIMEOUT_S
        )
        if len(self._usage) >= USAGE_CACHE_MAX:  # bounded: drop what is stale, else all
            for key in [k for k, (t, _) in self._usage.items() if now - t >= USAGE_CACHE_S]:
                del self._usage[key]
            if len(self._usage) >= USAGE_CACHE_MAX:
                self._usage.clear()
        if usage is not None:
            self._usage[node_id] = (now, usage)
        return usage

    async def _admit(
        self, usage: quotas.Usage | None, part: PartFile, announced: int
    ) -> int | None:
        """Check the quota from the announced size; return the bytes left for this file."""
        if usage is None or not usage.limited:
            return None
        replaced = await self.rt.executor.run(
            regular_size, part.final_path, timeout=DISK_TIMEOUT_S, what="the mirror disk"
        )
        credit = replaced or 0
        add_files = 0 if replaced is not None else 1
        reason = quotas.over_quota(usage, max(announced - credit, 0), add_files)
        if reason:
            self.refused_quota += 1
            raise ResourceExhausted(reason + "; nothing was written")
        if not usage.quota_bytes:
            return None
        return usage.quota_bytes - usage.used_bytes + credit

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
