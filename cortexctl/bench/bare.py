"""The bare grpc.aio server `cortexctl bench --baseline` measures the hub against.

The same three RPCs as the hub, with none of its work: SyncConfiguration is a unary ping
(the CPU floor a join's store work sits on), TaskStream sends a policy and acks every
heartbeat, SyncFile writes, hashes and fsyncs each file like the hub (off the event loop).
Same server options as the hub (message limits, pending-request limits). It runs in its
own process:

    python -m cortexctl.bench.bare --ready-file ready.json --data-dir DIR
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from cortexctl.tuning import tune_malloc

MAX_CHUNK = 1024 * 1024
MAX_FILE = 1024**3


class BareServicer(pb_grpc.AgentOrchestratorServicer):
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    async def SyncConfiguration(  # noqa: N802 - the generated name
        self, request: pb.SyncConfigurationRequest, context: Any
    ) -> pb.NodeConfiguration:
        node_id = request.requested_name or uuid.uuid4().hex
        return pb.NodeConfiguration(
            node_id=node_id,
            node_credential="" if request.node_credential else f"bare-{node_id}",
            heartbeat_interval_ms=1000,
            max_chunk_bytes=MAX_CHUNK,
            max_file_bytes=MAX_FILE,
            hub_id="bare",
        )

    async def TaskStream(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.NodeMessage], context: Any
    ) -> AsyncIterator[pb.HubMessage]:
        yield pb.HubMessage(policy=pb.SandboxPolicy(revision=1))
        async for message in request_iterator:
            if message.WhichOneof("body") == "heartbeat":
                yield pb.HubMessage(heartbeat_ack=pb.HeartbeatAck(seq=message.heartbeat.seq))

    async def SyncFile(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.FileChunk], context: Any
    ) -> pb.FileSyncResult:
        hasher = hashlib.sha256()
        path = ""
        fd = -1
        size = 0
        temp = self.data_dir / f".bare.{uuid.uuid4().hex}.tmp"
        try:
            async for chunk in request_iterator:
                if fd < 0:
                    path = chunk.path
                    fd = await asyncio.to_thread(
                        os.open, temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
                    )
                await asyncio.to_thread(_write_hashed, fd, chunk.data, hasher)
                size += len(chunk.data)
                if chunk.is_final:
                    break
            if fd >= 0:
                await asyncio.to_thread(os.fsync, fd)
            digest = hasher.hexdigest()
        finally:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):
                temp.unlink()
        return pb.FileSyncResult(path=path, size=size, sha256=digest)


def _write_hashed(fd: int, data: bytes, hasher: Any) -> None:
    hasher.update(data)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def server_options() -> list[tuple[str, Any]]:
    return [
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", MAX_CHUNK + 64 * 1024),
        ("grpc.max_send_message_length", 8 * 1024 * 1024),
        ("grpc.server.max_pending_requests", 20_000),
        ("grpc.server.max_pending_requests_hard_limit", 40_000),
    ]


async def serve(listen: str, ready_file: Path, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    server = grpc.aio.server(options=server_options())
    pb_grpc.add_AgentOrchestratorServicer_to_server(  # type: ignore[no-untyped-call]
        BareServicer(data_dir), server
    )
    port = server.add_insecure_port(listen)
    await server.start()
    host = listen.rsplit(":", 1)[0]
    temp = ready_file.with_suffix(".tmp")
    temp.write_text(json.dumps({"address": f"{host}:{port}", "hub_id": "bare"}))
    temp.replace(ready_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    tune_malloc(MAX_CHUNK)  # as the hub does
    asyncio.run(serve(args.listen, args.ready_file, args.data_dir))


if __name__ == "__main__":
    main()
