"""Random and hostile input against a live hub: the documented code comes back and the hub
keeps serving."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from tests.helpers import Hub, Mesh, cli_json

pytestmark = pytest.mark.integration

FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DOCUMENTED = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
}
text = st.text(max_size=300) | st.text(min_size=2000, max_size=5000)


def restart(tmp_path: Path, mesh: Mesh, name: str, **env: str) -> Hub:
    mesh.hub.stop()
    hub = Hub(tmp_path / name, {**mesh.env, **env})
    hub.workdir.mkdir()
    mesh.hub = hub.start()
    return hub


@pytest.fixture
def lenient(tmp_path: Path, mesh: Mesh) -> Iterator[Mesh]:
    """A hub that does not rate-limit failures, so fuzzing can hit every other path."""
    restart(tmp_path, mesh, "lenient", CORTEX_AUTH_FAILURE_LIMIT="0")
    yield mesh


def assert_serving(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


@FUZZ
@given(
    token=text
    | st.from_regex(r"cortex-invite\.inv_[0-9a-f]{12}\.[A-Za-z0-9_-]{43}", fullmatch=True),
    credential=st.sampled_from(["", "cortex-node.nd_000000000000.x"]),
    hostname=text,
    name=text,
    version=text,
    labels=st.dictionaries(st.text(max_size=80), st.text(max_size=400), max_size=80),
    capabilities=st.lists(st.text(max_size=100), max_size=80),
)
def test_hostile_handshakes_get_documented_codes(
    lenient: Mesh,
    token: str,
    credential: str,
    hostname: str,
    name: str,
    version: str,
    labels: dict[str, str],
    capabilities: list[str],
) -> None:
    request = pb.SyncConfigurationRequest(
        invite_token=token,
        node_credential=credential,
        hostname=hostname,
        requested_name=name,
        agent_version=version,
        labels=labels,
        capabilities=capabilities,
    )
    with grpc.insecure_channel(lenient.hub.address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.SyncConfiguration(request, timeout=30)
    assert caught.value.code() in DOCUMENTED, caught.value.details()
    assert caught.value.details()


def test_a_valid_join_with_hostile_labels_is_refused_without_using_the_invite(
    lenient: Mesh,
) -> None:
    token = lenient.invite()
    with grpc.insecure_channel(lenient.hub.address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        for bad in ({"bad key": "v"}, {"k": "\0"}, {"k": "v" * 1000}):
            with pytest.raises(grpc.RpcError) as caught:
                stub.SyncConfiguration(pb.SyncConfigurationRequest(invite_token=token, labels=bad))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as caught:
            stub.SyncConfiguration(pb.SyncConfigurationRequest(invite_token=token, hostname="a\0b"))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        joined = stub.SyncConfiguration(pb.SyncConfigurationRequest(invite_token=token))
        assert joined.node_credential


@pytest.fixture
def stream_credential(lenient: Mesh) -> str:
    with grpc.insecure_channel(lenient.hub.address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        config = stub.SyncConfiguration(
            pb.SyncConfigurationRequest(invite_token=lenient.invite(), requested_name="fuzz")
        )
    return str(config.node_credential)


@FUZZ
@given(
    updates=st.lists(
        st.builds(
            pb.TaskUpdate,
            task_id=st.text(max_size=100),
            state=st.integers(0, 12),
            exit_code=st.integers(-(2**31), 2**31 - 1),
            stdout=st.binary(max_size=3000),
            error=st.text(max_size=500),
        ),
        max_size=8,
    ),
    acks=st.lists(st.integers(0, 2**64 - 1), max_size=3),
)
def test_hostile_stream_messages_are_ignored_and_heartbeats_still_acked(
    lenient: Mesh, stream_credential: str, updates: list[pb.TaskUpdate], acks: list[int]
) -> None:
    messages = [pb.NodeMessage(task_update=u) for u in updates]
    messages += [pb.NodeMessage(policy_ack=pb.PolicyAck(revision=r)) for r in acks]
    messages.append(pb.NodeMessage(heartbeat=pb.Heartbeat(seq=2**64 - 1, running_tasks=9)))
    with grpc.insecure_channel(lenient.hub.address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        stream = stub.TaskStream(
            iter(messages), metadata=[("authorization", f"Bearer {stream_credential}")]
        )
        replies = list(stream)
    kinds = [reply.WhichOneof("body") for reply in replies]
    assert kinds[0] == "policy"
    # Hostile terminal updates are answered too (TaskUpdateAck, accepted=false), maybe after
    # the heartbeat's ack: what matters is that the heartbeat still got its ack.
    assert [r.heartbeat_ack.seq for r in replies if r.HasField("heartbeat_ack")] == [2**64 - 1]
    assert all(not r.task_update_ack.accepted for r in replies if r.HasField("task_update_ack"))


def test_a_message_with_no_body_ends_the_stream_invalid_argument(
    lenient: Mesh, stream_credential: str
) -> None:
    with grpc.insecure_channel(lenient.hub.address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        stream = stub.TaskStream(
            iter([pb.NodeMessage()]), metadata=[("authorization", f"Bearer {stream_credential}")]
        )
        with pytest.raises(grpc.RpcError) as caught:
            list(stream)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_oversized_messages_are_refused(lenient: Mesh) -> None:
    with grpc.insecure_channel(
        lenient.hub.address, options=[("grpc.max_send_message_length", -1)]
    ) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.SyncConfiguration(pb.SyncConfigurationRequest(hostname="x" * 3_000_000))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_serving(lenient.hub.address)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(garbage=st.binary(min_size=1, max_size=4096))
def test_garbage_bytes_on_the_port_do_not_hurt(lenient: Mesh, garbage: bytes) -> None:
    host, port = lenient.hub.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(garbage)
        sock.settimeout(2)
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            sock.recv(1024)
    assert_serving(lenient.hub.address)


def test_failed_handshakes_are_limited_per_invite_not_per_address(
    tmp_path: Path, mesh: Mesh
) -> None:
    restart(tmp_path, mesh, "strict-limit", CORTEX_AUTH_FAILURE_LIMIT="3")
    guessed = cli_json("invites", "create")
    other = mesh.invite()  # another node's invite, used from the same address (NAT)
    wrong = f"cortex-invite.{guessed['id']}.not-the-secret"
    with grpc.insecure_channel(mesh.hub.address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        codes = []
        for _ in range(4):
            with pytest.raises(grpc.RpcError) as caught:
                stub.SyncConfiguration(pb.SyncConfigurationRequest(invite_token=wrong))
            codes.append(caught.value.code())
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert f"invite {guessed['id']}" in caught.value.details()
        assert "retry in" in caught.value.details()
        # The guessed invite waits out the window, even with its right secret...
        with pytest.raises(grpc.RpcError) as caught:
            stub.SyncConfiguration(pb.SyncConfigurationRequest(invite_token=guessed["token"]))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # ...but another node behind the same address joins.
        joined = stub.SyncConfiguration(
            pb.SyncConfigurationRequest(invite_token=other, requested_name="neighbour")
        )
        assert joined.node_credential
        # Garbage tokens share a hub-wide budget and never lock out a well-formed one.
        for _ in range(10):
            with pytest.raises(grpc.RpcError) as caught:
                stub.SyncConfiguration(pb.SyncConfigurationRequest(invite_token="nope"))
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    uses = {invite["id"]: invite["uses_count"] for invite in cli_json("invites", "list")}
    assert uses[guessed["id"]] == 0


def test_rotated_credential_ends_the_stream_and_stops_working(mesh: Mesh) -> None:
    with grpc.insecure_channel(mesh.hub.address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        old = stub.SyncConfiguration(
            pb.SyncConfigurationRequest(invite_token=mesh.invite(), requested_name="rot")
        ).node_credential

        opened = threading.Event()

        def beats() -> Iterator[pb.NodeMessage]:
            yield pb.NodeMessage(heartbeat=pb.Heartbeat(seq=1))
            # Rotate only once the hub has accepted the stream: gRPC pulls requests from this
            # iterator before the hub has authenticated the call.
            assert opened.wait(30), "the hub never answered the stream"
            rotated.update(cli_json("nodes", "rotate-credential", "rot", "--yes"))
            for seq in range(2, 600):  # heartbeat until the hub closes the stream
                time.sleep(0.1)
                yield pb.NodeMessage(heartbeat=pb.Heartbeat(seq=seq))

        rotated: dict[str, str] = {}
        stream = stub.TaskStream(beats(), metadata=[("authorization", f"Bearer {old}")])
        with pytest.raises(grpc.RpcError) as caught:
            for _reply in stream:
                opened.set()
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "rotated" in caught.value.details()
        for credential, code in (
            (old, grpc.StatusCode.UNAUTHENTICATED),
            (rotated["node_credential"], None),
        ):
            request = pb.SyncConfigurationRequest(node_credential=credential)
            if code is None:
                assert stub.SyncConfiguration(request).node_id == rotated["id"]
            else:
                with pytest.raises(grpc.RpcError) as caught:
                    stub.SyncConfiguration(request)
                assert caught.value.code() == code
