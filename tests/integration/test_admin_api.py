"""The admin API on a real `cortexctl serve` (TLS with a generated CA): roles, the Python
client, safe retries and the audit log from both paths."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from cortexctl.client import AsyncHub, Hub
from cortexctl.core.roles import METHOD_ROLES, ROLES, allows
from cortexctl.errors import NotFound, PermissionDenied, Unauthenticated
from cortexctl.proto import admin_pb2 as apb
from cortexctl.proto import admin_pb2_grpc as apb_grpc
from tests.conftest import wait_until
from tests.faults.certs import Pki, make_pki
from tests.helpers import Hub as HubProc
from tests.helpers import Mesh, cli_json, run_cli

pytestmark = pytest.mark.integration

# One request per method that passes authorization and reaches core (its own answer may be
# NOT_FOUND and the like: only the two auth statuses matter here).
PROBES: dict[str, Any] = {
    "CreateInvite": apb.CreateInviteRequest(ttl_ms=60_000),
    "ListInvites": apb.ListInvitesRequest(),
    "RevokeInvite": apb.RevokeInviteRequest(id="inv_missing"),
    "ListNodes": apb.ListNodesRequest(),
    "ShowNode": apb.ShowNodeRequest(node="missing"),
    "SubmitTask": apb.SubmitTaskRequest(node="missing", argv=["true"]),
    "ListTasks": apb.ListTasksRequest(),
    "ShowTask": apb.ShowTaskRequest(id="tk_missing"),
    "CancelTask": apb.CancelTaskRequest(id="tk_missing"),
    "WaitTask": apb.WaitTaskRequest(id="tk_missing", timeout_ms=10),
    "WatchTask": apb.WatchTaskRequest(id="tk_missing"),
    "MeshStatus": apb.MeshStatusRequest(),
    "WatchEvents": apb.WatchEventsRequest(),
    "ListMirrors": apb.ListMirrorsRequest(node="missing"),
    "ListHubs": apb.ListHubsRequest(),
    "ListAudit": apb.ListAuditRequest(),
    "FailNodeTasks": apb.FailNodeTasksRequest(node="missing"),
    "RunGc": apb.RunGcRequest(kind="invites", dry_run=True),
    "DownloadMirrorFile": apb.DownloadMirrorFileRequest(node="missing", path="a"),
    "SetSandbox": apb.SetSandboxRequest(nodes=["missing"], mode="strict"),
    "SetQuota": apb.SetQuotaRequest(node="missing", quota_files=1),
    "RevokeNode": apb.RevokeNodeRequest(nodes=["missing"]),
    "RotateCredential": apb.RotateCredentialRequest(node="missing"),
    "RenameNode": apb.RenameNodeRequest(node="missing", new_name="other"),
    "DeleteNode": apb.DeleteNodeRequest(node="missing"),
    "CordonNode": apb.CordonNodeRequest(node="missing", cordoned=True),
    "DrainNode": apb.DrainNodeRequest(node="missing", timeout_ms=10),
    "RemoveMirrorFiles": apb.RemoveMirrorFilesRequest(node="missing"),
    "CreateAdminToken": apb.CreateAdminTokenRequest(name="probe", role="viewer"),
    "ListAdminTokens": apb.ListAdminTokensRequest(),
    "RevokeAdminToken": apb.RevokeAdminTokenRequest(ref="missing"),
}
STREAMS = {"WatchTask", "WatchEvents", "DownloadMirrorFile"}
AUTH_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def tls_mesh(tmp_path: Path, mesh: Mesh) -> tuple[Pki, str]:
    """Restart the mesh's hub with TLS; return the PKI and a target the cert names."""
    pki = make_pki(tmp_path / "pki")
    mesh.hub.stop()
    extra = ["--tls-cert", str(pki.hub_cert), "--tls-key", str(pki.hub_key)]
    hub = HubProc(tmp_path / "tls-hub", mesh.env, extra=extra)
    hub.workdir.mkdir()
    mesh.hub = hub.start("127.0.0.1:0")
    return pki, f"localhost:{hub.address.rsplit(':', 1)[1]}"


def admin_token(role: str, name: str, *extra: str) -> str:
    created = cli_json("admin-tokens", "create", "--role", role, "--name", name, *extra)
    return str(created["token"])


def call(stub: Any, method: str, token: str | None) -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {token}")] if token else []
    try:
        answer = getattr(stub, method)(PROBES[method], metadata=metadata, timeout=30)
        if method in STREAMS:
            next(iter(answer), None)  # WatchEvents never ends: its first event will do
            answer.cancel()
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_every_served_method_has_a_role_and_a_probe() -> None:
    served = set(apb.DESCRIPTOR.services_by_name["AdminService"].methods_by_name)
    assert served == set(METHOD_ROLES) == set(PROBES)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_allowed_and_refused_exactly_what_the_table_says(
    tmp_path: Path, mesh: Mesh, role: str
) -> None:
    pki, target = tls_mesh(tmp_path, mesh)
    token = admin_token(role, f"t-{role}")
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    refused = []
    with grpc.secure_channel(target, credentials) as channel:
        stub = apb_grpc.AdminServiceStub(channel)
        for method, needed in METHOD_ROLES.items():
            code = call(stub, method, token)
            if allows(role, needed):
                assert code not in AUTH_CODES, f"{role} refused {method}: {code}"
            else:
                assert code == grpc.StatusCode.PERMISSION_DENIED, f"{role} got {method}"
                refused.append(method)
        # The refusal names the role needed, and the role the token has.
        if role == "viewer":
            with pytest.raises(grpc.RpcError) as caught:
                stub.SubmitTask(
                    PROBES["SubmitTask"],
                    metadata=[("authorization", f"Bearer {token}")],
                    timeout=30,
                )
            assert "SubmitTask needs the operator role" in (caught.value.details() or "")
            assert "has viewer" in (caught.value.details() or "")
    # Each refused call is in the audit log once: who, which method, the role it needed.
    entries = [e for e in cli_json("audit", "list") if e["action"] == "admin_api.refused"]
    assert sorted(e["target"] for e in entries) == sorted(refused), mesh.hub.log()[-3000:]
    for entry in entries:
        assert (entry["actor"], entry["actor_kind"], entry["outcome"]) == (
            f"t-{role}",
            "token",
            "denied",
        )
        assert entry["detail"] == {"needed": METHOD_ROLES[entry["target"]], "role": role}


def test_calls_without_a_good_token_are_unauthenticated_and_audited(
    tmp_path: Path, mesh: Mesh
) -> None:
    pki, target = tls_mesh(tmp_path, mesh)
    admin_token("admin", "someone")
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    with grpc.secure_channel(target, credentials) as channel:
        stub = apb_grpc.AdminServiceStub(channel)
        for method in METHOD_ROLES:
            assert call(stub, method, None) == grpc.StatusCode.UNAUTHENTICATED
            assert call(stub, method, "cortex-admin.adm_x.nope") == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as caught:
            stub.RunGc(PROBES["RunGc"], timeout=30)
        assert "RunGc needs the operator role" in (caught.value.details() or "")
    entries = [e for e in cli_json("audit", "list") if e["action"] == "admin_api.refused"]
    assert {e["outcome"] for e in entries} == {"unauthenticated"}
    by_actor: dict[str, list[str]] = {}
    for entry in entries:
        by_actor.setdefault(entry["actor"], []).append(entry["target"])
    # One entry per method and caller (repeats within a minute are counted, not written).
    assert sorted(by_actor["anonymous"]) == sorted(METHOD_ROLES)
    assert sorted(by_actor["adm_x"]) == sorted(METHOD_ROLES)
    assert "nope" not in json.dumps(entries)
    # Plaintext to a TLS hub gets nowhere.
    with grpc.insecure_channel(mesh.hub.address) as channel:
        assert call(apb_grpc.AdminServiceStub(channel), "ListNodes", "x") == (
            grpc.StatusCode.UNAVAILABLE
        )


def test_revoked_and_expired_admin_tokens_are_refused(tmp_path: Path, mesh: Mesh) -> None:
    pki, target = tls_mesh(tmp_path, mesh)
    revoked = admin_token("admin", "soon-revoked")
    expiring = admin_token("admin", "short-lived", "--ttl", "2s")
    with Hub.connect(target, token=revoked, ca_cert=pki.ca) as hub:
        assert hub.nodes() == []
        assert run_cli("admin-tokens", "revoke", "soon-revoked").exit_code == 0
        with pytest.raises(Unauthenticated, match="revoked"):
            hub.nodes()
    with Hub.connect(target, token=expiring, ca_cert=pki.ca) as hub:

        def refused() -> bool:
            try:
                hub.nodes()
            except Unauthenticated as err:
                return "expired" in str(err)
            return False

        wait_until(refused, 30, "the 2 s admin token to expire")
    listed = {t["name"]: t["state"] for t in cli_json("admin-tokens", "list", "--all")}
    assert listed == {"soon-revoked": "revoked", "short-lived": "expired"}


def test_an_orchestrator_dispatches_waits_watches_and_retries_safely(
    tmp_path: Path, mesh: Mesh
) -> None:
    pki, target = tls_mesh(tmp_path, mesh)
    mesh.start_agent("worker", mesh.invite("--label", "zone=eu"), "--ca-cert", str(pki.ca))
    cli_json("nodes", "sandbox", "worker", "--strict", "--allow", "echo", "--allow", "true")
    token = admin_token("operator", "orchestrator")
    with Hub.connect(target, token=token, ca_cert=pki.ca) as hub:
        assert [n.name for n in hub.nodes(selector="zone=eu")] == ["worker"]
        assert hub.nodes(selector="zone=us") == []
        task = hub.submit("worker", ["echo", "hello"])
        result = task.wait(timeout=60)
        assert (result.state, result.exit_code, result.stdout) == ("succeeded", 0, b"hello\n")
        states = [update.state for update in hub.submit("worker", ["true"]).watch()]
        assert states[-1] == "succeeded" and len(states) == len(set(states))
        # A retried submit with the same request id makes no second task.
        first = hub.submit("worker", ["true"], request_id="req-42")
        again = hub.submit("worker", ["true"], request_id="req-42")
        assert first.id == again.id
        assert first.wait(timeout=60).ok
        with pytest.raises(NotFound):
            hub.task("tk_missing")
    viewer = admin_token("viewer", "watcher")
    with (
        Hub.connect(target, token=viewer, ca_cert=pki.ca) as hub,
        pytest.raises(PermissionDenied, match="needs the operator role"),
    ):
        hub.submit("worker", ["true"])

    async def orchestrate() -> list[str]:
        async with AsyncHub.connect(target, token=token, ca_cert=pki.ca) as hub:
            task = await hub.submit("worker", ["echo", "async"])
            seen = [update.state async for update in task.watch()]
            assert (await task.wait(timeout=60)).stdout == b"async\n"
            return seen

    seen = asyncio.run(orchestrate())
    assert seen[-1] == "succeeded"
    tasks = cli_json("tasks", "list", "--node", "worker")
    assert len(tasks) == 4  # echo hello, true, req-42 once, echo async


def test_the_audit_log_records_both_paths_and_no_secret(tmp_path: Path, mesh: Mesh) -> None:
    pki, target = tls_mesh(tmp_path, mesh)
    local_invite = mesh.invite()
    mesh.start_agent("worker", local_invite, "--ca-cert", str(pki.ca))
    cli_json("nodes", "sandbox", "worker", "--strict", "--allow", "sleep", "--allow", "true")
    token = admin_token("operator", "robot")
    with Hub.connect(target, token=token, ca_cert=pki.ca) as hub:
        created = hub.create_invite(ttl=60)
        hub.revoke_invite(created.invite.id)
        # The environment's values stay out of the log (the node's policy may refuse it).
        with_env = hub.submit("worker", ["true"], env={"API_KEY": "s3cret-value"})
        task = hub.submit("worker", ["sleep", "30"])
        wait_until(lambda: task.result().state == "running", 30, "the task to run")
        task.cancel()
    submitted = run_cli("tasks", "submit", "worker", "--", "true")
    assert submitted.exit_code == 0, submitted.stderr
    local_task = submitted.stdout.strip()
    entries = cli_json("audit", "list")
    by_action: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_action.setdefault(entry["action"], []).append(entry)
    assert [e["actor_kind"] for e in by_action["invites.create"]] == ["local", "token"]
    assert [e["actor"] for e in by_action["invites.revoke"]] == ["robot"]
    assert [(e["actor"], e["target"]) for e in by_action["tasks.cancel"]] == [("robot", task.id)]
    assert {e["target"] for e in by_action["tasks.submit"]} == {task.id, with_env.id, local_task}
    assert by_action["nodes.join"][0]["actor"] == "worker"
    assert by_action["nodes.join"][0]["actor_kind"] == "node"
    assert "ipv4:127.0.0.1" in by_action["nodes.join"][0]["source"]
    assert [e["actor"] for e in by_action["admin_tokens.create"]] == [
        by_action["invites.create"][0]["actor"]
    ]
    robot = cli_json("audit", "list", "--actor", "robot")
    assert {e["action"] for e in robot} == {
        "invites.create",
        "invites.revoke",
        "tasks.submit",
        "tasks.cancel",
    }
    assert all("admin API from" in e["source"] for e in robot)
    dumped = json.dumps(entries)
    for secret in (local_invite, created.token, token, "s3cret-value"):
        assert secret not in dumped
    assert "cortex-" not in dumped and "Bearer" not in dumped


def test_mtls_client_certificates_get_the_role_the_hub_maps_them_to(
    tmp_path: Path, mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    pki = make_pki(tmp_path / "pki", clients=("ops", "robot", "stranger"))
    mesh.hub.stop()
    tls = ["--tls-cert", str(pki.hub_cert), "--tls-key", str(pki.hub_key)]
    env = {**mesh.env, "CORTEX_ADMIN_CERT_ROLES": "ops=viewer,robot=operator"}
    # Roles for certificates the hub does not verify are refused at start, in one line.
    with monkeypatch.context() as patched:
        patched.setenv("CORTEX_ADMIN_CERT_ROLES", env["CORTEX_ADMIN_CERT_ROLES"])
        refused = run_cli("serve", "--listen", "127.0.0.1:0", "--dry-run", *tls)
    assert refused.exit_code == 2 and "--tls-client-ca" in refused.stderr, refused.stderr
    hub = HubProc(tmp_path / "mtls-hub", env, extra=[*tls, "--tls-client-ca", str(pki.ca)])
    hub.workdir.mkdir()
    mesh.hub = hub.start("127.0.0.1:0")
    target = f"localhost:{hub.address.rsplit(':', 1)[1]}"

    def connect(common: str, token: str | None = None) -> Hub:
        cert, key = pki.clients[common]
        return Hub.connect(target, token=token, ca_cert=pki.ca, cert=cert, key=key)

    with connect("ops") as viewer:
        assert viewer.nodes() == []
        with pytest.raises(PermissionDenied, match="client certificate 'ops' has viewer"):
            viewer.create_invite(ttl=60)
    with connect("robot") as operator:
        created = operator.create_invite(ttl=60)
        with pytest.raises(PermissionDenied, match="needs the admin role"):
            operator.create_admin_token("nope", role="viewer")
    with connect("stranger") as stranger, pytest.raises(Unauthenticated, match="no admin role"):
        stranger.nodes()
    # A token, when sent, is the credential (here an admin's, over the viewer's certificate).
    with connect("ops", token=admin_token("admin", "boss")) as boss:
        assert boss.create_admin_token("made-by-boss", role="viewer").admin_token.role == "viewer"
    entries = cli_json("audit", "list")
    made = [e for e in entries if e["action"] == "invites.create"]
    assert [(e["actor"], e["actor_kind"], e["target"]) for e in made] == [
        ("robot", "certificate", created.invite.id)
    ]
    refusals = {
        (e["actor"], e["actor_kind"], e["outcome"])
        for e in entries
        if e["action"] == "admin_api.refused"
    }
    assert refusals == {
        ("ops", "certificate", "denied"),
        ("robot", "certificate", "denied"),
        ("stranger", "certificate", "unauthenticated"),
    }
