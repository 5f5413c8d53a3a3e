"""Transport security: TLS and mTLS on the hub, refusal of plaintext off loopback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.faults.certs import Pki, make_pki
from tests.helpers import CORTEXCTL, Hub, Mesh

pytestmark = pytest.mark.integration


def health(channel: grpc.Channel) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return int(reply.status)


def tls_hub(tmp_path: Path, mesh: Mesh, pki: Pki, mutual: bool) -> Hub:
    mesh.hub.stop()
    extra = ["--tls-cert", str(pki.hub_cert), "--tls-key", str(pki.hub_key)]
    if mutual:
        extra += ["--tls-client-ca", str(pki.ca)]
    hub = Hub(tmp_path / ("mtls" if mutual else "tls"), mesh.env, extra=extra)
    hub.workdir.mkdir()
    mesh.hub = hub.start("127.0.0.1:0")
    return hub


def test_tls_hub_serves_tls_clients_and_refuses_plaintext(tmp_path: Path, mesh: Mesh) -> None:
    pki = make_pki(tmp_path / "pki")
    hub = tls_hub(tmp_path, mesh, pki, mutual=False)
    port = hub.address.rsplit(":", 1)[1]
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(hub.address) as channel, pytest.raises(grpc.RpcError) as caught:
        health(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate(tmp_path: Path, mesh: Mesh) -> None:
    pki = make_pki(tmp_path / "pki")
    hub = tls_hub(tmp_path, mesh, pki, mutual=True)
    target = f"localhost:{hub.address.rsplit(':', 1)[1]}"
    anonymous = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    with grpc.secure_channel(target, anonymous) as channel, pytest.raises(grpc.RpcError) as caught:
        health(channel)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    identified = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.client_key.read_bytes(),
        certificate_chain=pki.client_cert.read_bytes(),
    )
    with grpc.secure_channel(target, identified) as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(
    "args",
    [
        ["--listen", "0.0.0.0:0"],
        ["--listen", "127.0.0.1:0", "--tls-cert", "x.pem"],
        ["--listen", "127.0.0.1:0", "--tls-client-ca", "ca.pem"],
    ],
)
def test_serve_refuses_unsafe_or_incomplete_transport(args: list[str], mesh: Mesh) -> None:
    done = subprocess.run(
        [*CORTEXCTL, "serve", *args], env=mesh.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ")
    assert "Traceback" not in done.stderr


def test_agent_joins_over_mutual_tls(tmp_path: Path, mesh: Mesh) -> None:
    pki = make_pki(tmp_path / "pki")
    hub = tls_hub(tmp_path, mesh, pki, mutual=True)
    hub.address = f"localhost:{hub.address.rsplit(':', 1)[1]}"  # the name the cert carries
    mesh.start_agent(
        "tls-node",
        mesh.invite(),
        "--ca-cert",
        str(pki.ca),
        "--cert",
        str(pki.client_cert),
        "--key",
        str(pki.client_key),
    )
    assert mesh.node("tls-node")["online"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hub", "hub.example:50051"], "refusing plaintext to non-loopback hub"),
        (["--hub", "127.0.0.1:1", "--cert", "c.pem"], "needs both --cert and --key"),
        (["--hub", "127.0.0.1:1", "--cert", "c.pem", "--key", "k.pem"], "need --ca-cert"),
    ],
)
def test_agent_refuses_unsafe_or_incomplete_transport(
    tmp_path: Path, mesh: Mesh, args: list[str], message: str
) -> None:
    done = subprocess.run(
        [*CORTEXCTL, "agent", *args, "--workspace", str(tmp_path), "--token", "x"],
        env=mesh.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
