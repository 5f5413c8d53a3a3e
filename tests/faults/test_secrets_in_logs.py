"""No token, credential or secret ever appears in a log line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import grpc
import pytest

from cortexctl.logs import RedactingFilter, redact_text
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from tests.helpers import Hub, Mesh, cli_json

pytestmark = pytest.mark.integration


def secret_of(token: str) -> str:
    return token.rsplit(".", 1)[1]


def test_no_secret_in_hub_or_agent_logs(tmp_path: Path, mesh: Mesh) -> None:
    mesh.hub.stop()
    hub = Hub(tmp_path / "debug-hub", mesh.env, extra=["--log-level", "debug"])
    hub.workdir.mkdir()
    mesh.hub = hub.start()
    token = mesh.invite("--sandbox", "permissive")
    agent = mesh.start_agent("n1", token, "--log-level", "debug")
    credential = json.loads((mesh.root / "agents/n1/state/credential.json").read_text())
    node_secret = secret_of(credential["node_credential"])
    cli_json("tasks", "submit", "n1", "--wait", "--script", "echo done")
    # Failed attempts quote what they were given; the log must still not.
    with grpc.insecure_channel(hub.address) as channel:
        stub = pb_grpc.AgentOrchestratorStub(channel)
        for request in (
            pb.SyncConfigurationRequest(invite_token=token),
            pb.SyncConfigurationRequest(invite_token=token + "x"),
        ):
            with pytest.raises(grpc.RpcError):
                stub.SyncConfiguration(request)
    rotated = cli_json("nodes", "rotate-credential", "n1", "--yes")["node_credential"]
    agent.stop()
    hub.stop()
    logs = hub.log() + agent.log()
    assert "joined" in logs  # the logs are there and say things
    for secret in (secret_of(token), node_secret, secret_of(rotated)):
        assert secret not in logs


def test_redaction_covers_messages_arguments_and_tracebacks() -> None:
    token = "cortex-invite.inv_0123456789ab.SECRETsecret_-123"
    assert "SECRET" not in redact_text(f"bad {token} and Bearer abc.def")
    record = logging.LogRecord("cortexctl", logging.ERROR, __file__, 1, "got %s", (token,), None)
    try:
        raise ValueError(token)
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    assert "SECRET" not in record.getMessage()
    assert "ValueError" in record.getMessage()
