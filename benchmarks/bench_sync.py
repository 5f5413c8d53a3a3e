"""Benchmark file sync against a real hub process (not a test: it prints figures).

    .venv/bin/python benchmarks/bench_sync.py [--size-mib 256] [--files 1000] [--aborts 10000]

Starts `cortexctl serve` on loopback with a fresh data dir (SQLite unless --database-url),
joins one node, then prints upload MB/s for one large file and for many small ones, and
the hub's RSS (VmRSS from /proc) before and after rounds of aborted uploads.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from cortexctl.agent.syncer import upload_file, upload_many
from cortexctl.bench.launcher import start_hub
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from cortexctl.tuning import tune_malloc

MIB = 1024 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cli(env: dict[str, str], *args: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "cortexctl", *args, "--json"],
        env=env,
        check=True,
        capture_output=True,
    )
    return json.loads(out.stdout)


def temp_files(mirrors: Path) -> int:
    return sum(1 for path in mirrors.rglob(".cortex-sync.*.tmp"))


async def aborted_uploads(
    stub: Any, credential: str, count: int, parallel: int, chunk: int
) -> None:
    """Uploads cut off at random points: by a client cancel, or by closing the channel."""
    metadata = [("authorization", f"Bearer {credential}")]
    payload = os.urandom(chunk)
    gate = asyncio.Semaphore(parallel)

    async def one(index: int) -> None:
        async with gate:
            call = stub.SyncFile(metadata=metadata)
            try:
                for number in range(random.randint(0, 3)):
                    await call.write(
                        pb.FileChunk(
                            path=f"abort/{index % 500}.bin",
                            offset=number * chunk,
                            data=payload,
                            total_size=8 * chunk,
                        )
                    )
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                pass
            call.cancel()

    await asyncio.gather(*(one(i) for i in range(count)))


def leases(env: dict[str, str]) -> int:
    from sqlalchemy import func, select

    from cortexctl.store.engine import Store
    from cortexctl.store.models import SyncLease

    store = Store(env["CORTEX_DATABASE_URL"], pool_size=1)
    try:
        with store.session() as session:
            return int(session.scalar(select(func.count()).select_from(SyncLease)) or 0)
    finally:
        store.dispose()


def wait_clean(env: dict[str, str], mirrors: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while leases(env) or temp_files(mirrors):
        if time.monotonic() > deadline:
            raise SystemExit("aborted uploads left leases or temp files behind")
        time.sleep(0.2)


async def bench(args: argparse.Namespace, root: Path, env: dict[str, str]) -> None:
    hub = start_hub(root, env, "--log-level", "warning")
    address = hub.address
    mirrors = root / "data" / "mirrors"
    try:
        token = cli(env, "invites", "create")["token"]
        channel = grpc.aio.insecure_channel(
            address, options=[("grpc.max_send_message_length", 64 * MIB)]
        )
        stub = pb_grpc.AgentOrchestratorStub(channel)
        config = await stub.SyncConfiguration(
            pb.SyncConfigurationRequest(
                invite_token=token, hostname="bench", requested_name="bench"
            )
        )
        credential = config.node_credential
        node_root = mirrors / config.node_id
        workspace = root / "workspace"
        (workspace / "small").mkdir(parents=True)
        print(
            f"hub pid {hub.pid} at {address}; chunks {config.max_chunk_bytes} bytes; "
            f"malloc tuning {'off' if env.get('CORTEX_MALLOC_TUNING') == '0' else 'on'}"
        )

        big = workspace / "big.bin"
        with big.open("wb") as handle:
            for _ in range(args.size_mib):
                handle.write(os.urandom(MIB))
        expected = hashlib.sha256(big.read_bytes()).hexdigest()
        for attempt in range(args.repeat):
            started = time.perf_counter()
            result = await upload_file(
                stub,
                credential,
                workspace,
                "big.bin",
                max_chunk_bytes=config.max_chunk_bytes,
                max_file_bytes=config.max_file_bytes,
            )
            elapsed = time.perf_counter() - started
            assert result.sha256 == expected
            print(
                f"one {args.size_mib} MiB file: {args.size_mib * MIB / elapsed / 1e6:.0f} MB/s "
                f"({elapsed:.2f}s) [run {attempt + 1}]"
            )
        assert hashlib.sha256((node_root / "big.bin").read_bytes()).hexdigest() == expected
        big.unlink()

        names = [f"small/{i:05d}.bin" for i in range(args.files)]
        for name in names:
            (workspace / name).write_bytes(os.urandom(args.file_kib * 1024))
        for attempt in range(args.repeat):
            started = time.perf_counter()
            outcomes = await upload_many(
                stub, credential, workspace, names, config, parallel=args.parallel
            )
            elapsed = time.perf_counter() - started
            failed = [(n, o) for n, o in outcomes if isinstance(o, BaseException)]
            assert not failed, failed[:3]
            total = args.files * args.file_kib * 1024
            print(
                f"{args.files} files of {args.file_kib} KiB ({args.parallel} at a time): "
                f"{total / elapsed / 1e6:.0f} MB/s, {args.files / elapsed:.0f} files/s "
                f"({elapsed:.2f}s) [run {attempt + 1}]"
            )

        wait_clean(env, mirrors)
        print(f"hub RSS before aborted uploads: {rss_kib(hub.pid) / 1024:.1f} MiB")
        for round_ in range(args.rounds):
            started = time.perf_counter()
            await aborted_uploads(stub, credential, args.aborts, 64, config.max_chunk_bytes // 4)
            wait_clean(env, mirrors)
            print(
                f"hub RSS after {args.aborts * (round_ + 1)} aborted uploads: "
                f"{rss_kib(hub.pid) / 1024:.1f} MiB "
                f"({time.perf_counter() - started:.1f}s, no lease or temp file left)"
            )
        await channel.close()
    finally:
        hub.stop(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--file-kib", type=int, default=64)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--aborts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of --aborts uploads")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each upload figure")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--tmp", default=None, help="where the hub's data dir goes (e.g. /dev/shm)")
    parser.add_argument("--no-malloc-tuning", action="store_true", help="on the hub")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sync-", dir=args.tmp) as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORTEX_")}
        env.update(
            {
                "CORTEX_DATA_DIR": str(root / "data"),
                "CORTEX_DATABASE_URL": args.database_url
                or f"sqlite:///{root / 'data' / 'cortex.db'}",
                "HOME": str(root),
            }
        )
        if args.no_malloc_tuning:
            env["CORTEX_MALLOC_TUNING"] = "0"
        tune_malloc(MIB)  # this process plays the agent, which tunes malloc the same way
        asyncio.run(bench(args, root, env))


if __name__ == "__main__":
    main()
