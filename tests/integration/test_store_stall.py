"""A stalled store delays only the RPCs that need it: handshakes answer UNAVAILABLE at
their deadline while connected nodes keep getting heartbeat acks."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

import grpc
import pytest
import sqlalchemy as sa

from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from tests.conftest import wait_until
from tests.helpers import Mesh

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def stalled_store(url: str) -> Iterator[None]:
    """Hold the store's write lock (SQLite) or an exclusive lock on invites (PostgreSQL)."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN EXCLUSIVE")
            else:
                connection.exec_driver_sql("BEGIN")
                connection.exec_driver_sql("LOCK TABLE invites, nodes IN ACCESS EXCLUSIVE MODE")
            try:
                yield
            finally:
                connection.exec_driver_sql("ROLLBACK")
    finally:
        engine.dispose()


def join(
    stub: pb_grpc.AgentOrchestratorStub, token: str, name: str = "raw"
) -> pb.NodeConfiguration:
    reply: pb.NodeConfiguration = stub.SyncConfiguration(
        pb.SyncConfigurationRequest(invite_token=token, requested_name=name), timeout=30
    )
    return reply


def test_handshake_times_out_unavailable_while_heartbeats_flow(
    mesh: Mesh, database_url: str
) -> None:
    late_token = mesh.invite()
    with grpc.insecure_channel(mesh.hub.address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        config = join(stub, mesh.invite())
        outgoing: queue.Queue[pb.NodeMessage | None] = queue.Queue()
        stream = stub.TaskStream(
            iter(outgoing.get, None),
            metadata=[("authorization", f"Bearer {config.node_credential}")],
        )
        assert next(stream).WhichOneof("body") == "policy"
        acks: list[int] = []
        stop = threading.Event()

        def beat() -> None:  # a node heartbeating at its interval, as an agent does
            seq = 0
            while not stop.wait(config.heartbeat_interval_ms / 2000):
                seq += 1
                outgoing.put(pb.NodeMessage(heartbeat=pb.Heartbeat(seq=seq)))

        def read() -> None:
            with contextlib.suppress(grpc.RpcError):
                for message in stream:
                    acks.append(message.heartbeat_ack.seq)

        threads = [threading.Thread(target=beat), threading.Thread(target=read)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: acks, 10, "a first heartbeat ack")
            with stalled_store(database_url):
                seen = len(acks)
                with pytest.raises(grpc.RpcError) as caught:
                    join(stub, late_token, "raw-late")
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "did not answer within" in caught.value.details(), caught.value.details()
                # Still inside the stall: the connected node's heartbeats are acknowledged.
                wait_until(lambda: len(acks) >= seen + 5, 15, "acks during the stall")
            # The stall is over: the same token still works (the failed attempt used nothing).
            assert join(stub, late_token, "raw-late").node_id
        finally:
            stop.set()
            outgoing.put(None)
            for thread in threads:
                thread.join(10)
