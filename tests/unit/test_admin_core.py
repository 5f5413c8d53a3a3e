"""Admin tokens, the audit log, request ids and the role table, on a fresh store."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cortexctl.core import admin_tokens, audit, clock, invites, maintenance, operations
from cortexctl.core.audit import Actor
from cortexctl.core.roles import METHOD_ROLES, ROLES, allows, with_table
from cortexctl.core.sandbox import SandboxDefaults
from cortexctl.errors import Conflict, InvalidArgument, Unauthenticated
from cortexctl.store.models import AdminToken, AuditEntry, Node

REPO = Path(__file__).resolve().parents[2]
ME = Actor(name="alice", kind="local", source="cli on test")


def test_admin_token_is_shown_once_stored_hashed_and_refused_when_revoked(
    fresh_store: Any,
) -> None:
    with fresh_store.session(write=True) as session:
        created = admin_tokens.create_admin_token(
            session, ME, name="ci", role="operator", ttl_s=3600
        )
    secret = created.token.split(".")[2]
    with fresh_store.session() as session:
        row = session.scalars(select(AdminToken)).one()
        assert secret not in (row.secret_hash, row.id, row.name)
        assert admin_tokens.authenticate_admin(session, created.token).role == "operator"
        with pytest.raises(Unauthenticated, match="unknown"):
            admin_tokens.authenticate_admin(session, created.token[:-2] + "xx")
        with pytest.raises(Unauthenticated, match="malformed"):
            admin_tokens.authenticate_admin(session, "nope")
    with fresh_store.session(write=True) as session:
        admin_tokens.revoke_admin_token(session, ME, "ci")
    with fresh_store.session() as session, pytest.raises(Unauthenticated, match="revoked"):
        admin_tokens.authenticate_admin(session, created.token)


def test_expired_admin_token_is_refused_and_bad_input_is_a_usage_error(fresh_store: Any) -> None:
    with fresh_store.session(write=True) as session:
        created = admin_tokens.create_admin_token(session, ME, name="old", role="admin", ttl_s=60)
        session.scalars(select(AdminToken)).one().expires_at = clock.now() - timedelta(seconds=1)
    with fresh_store.session() as session, pytest.raises(Unauthenticated, match="expired"):
        admin_tokens.authenticate_admin(session, created.token)
    with fresh_store.session(write=True) as session:
        with pytest.raises(InvalidArgument, match="--role"):
            admin_tokens.create_admin_token(session, ME, name="x", role="root", ttl_s=None)
        with pytest.raises(Conflict):
            admin_tokens.create_admin_token(session, ME, name="old", role="admin", ttl_s=None)


def test_audit_entries_name_actor_target_and_never_hold_a_secret(fresh_store: Any) -> None:
    with fresh_store.session(write=True) as session:
        created = operations.create_invite(session, ME, ttl_s=600)
        operations.revoke_invite(session, ME, created.invite.id)
        token = admin_tokens.create_admin_token(session, ME, name="bot", role="viewer", ttl_s=None)
        with pytest.raises(ValueError, match="secret"):
            audit.record(session, ME, "x.y", detail={"token": created.token})
    with fresh_store.session() as session:
        entries = audit.list_audit(session)
        rows = session.scalars(select(AuditEntry)).all()
    assert [(e.action, e.actor, e.outcome) for e in entries] == [
        ("invites.create", "alice", "ok"),
        ("invites.revoke", "alice", "ok"),
        ("admin_tokens.create", "alice", "ok"),
    ]
    dumped = json.dumps([[r.actor, r.source, r.target, r.detail] for r in rows])
    for secret in (created.token, token.token, created.token.split(".")[2]):
        assert secret not in dumped


def test_audit_list_filters_and_gc_removes_only_old_entries(fresh_store: Any) -> None:
    bob = Actor(name="bob", kind="token", source="admin API")
    with fresh_store.session(write=True) as session:
        audit.record(session, ME, "invites.create", "inv_1")
        audit.record(session, bob, "tasks.submit", "tk_1")
        old = session.scalars(select(AuditEntry).where(AuditEntry.actor == "alice")).one()
        old.at = clock.now() - timedelta(days=400)
    with fresh_store.session() as session:
        assert [e.actor for e in audit.list_audit(session, actor="bob")] == ["bob"]
        since = clock.now() - timedelta(days=1)
        assert [e.actor for e in audit.list_audit(session, since=since)] == ["bob"]
    dry = maintenance.run_gc_audit(fresh_store, retention_s=365 * 86400, dry_run=True)
    assert dry["count"] == 1
    result = maintenance.run_gc_audit(fresh_store, retention_s=365 * 86400)
    assert result["count"] == 1
    with fresh_store.session() as session:
        assert [e.actor for e in audit.list_audit(session)] == ["bob"]


def test_a_retried_submit_with_the_same_request_id_makes_no_second_task(
    fresh_store: Any,
) -> None:
    with fresh_store.session(write=True) as session:
        session.add(
            Node(
                id="nd_1",
                name="n1",
                credential_hash="x" * 64,
                created_at=clock.now(),
                labels={},
                capabilities=[],
            )
        )
    defaults = SandboxDefaults(allowed_commands=("true",))
    ids = []
    for _ in range(2):
        with fresh_store.session(write=True) as session:
            done = operations.submit_tasks(
                session, ME, node="n1", argv=["true"], defaults=defaults, request_id="r-1"
            )
            ids.append((done.done.tasks[0].id, done.replayed))
    assert ids[0][0] == ids[1][0] and [r for _, r in ids] == [False, True]
    with fresh_store.session() as session:
        assert len(operations.list_tasks(session)) == 1
        assert [e.action for e in audit.list_audit(session)] == ["tasks.submit"]
    with fresh_store.session(write=True) as session, pytest.raises(InvalidArgument):
        operations.submit_tasks(
            session, ME, node="n1", argv=["true"], defaults=defaults, request_id="a b"
        )


def test_roles_include_the_ones_below_them() -> None:
    assert [allows("operator", r) for r in ROLES] == [True, True, False]
    assert allows("admin", "viewer") and not allows("viewer", "operator")
    assert not allows("nobody", "viewer")


def _doc_table(path: Path) -> dict[str, str]:
    text = path.read_text()
    block = text.split("<!-- admin-roles -->")[1]
    return dict(re.findall(r"^\| `(\w+)` \| (\w+) \|", block, flags=re.M))


@pytest.mark.parametrize("doc", ["README.md", "SECURITY.md"])
def test_the_docs_show_the_role_table_of_the_code(doc: str) -> None:
    assert _doc_table(REPO / doc) == METHOD_ROLES
    assert with_table(text := (REPO / doc).read_text()) == text  # tools/regen.py docs


def test_the_python_client_does_not_load_sqlalchemy() -> None:
    code = "import sys, cortexctl.client; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_invites_view_is_unchanged_by_auditing(fresh_store: Any) -> None:
    with fresh_store.session(write=True) as session:
        created = operations.create_invite(session, ME, ttl_s=60, uses=2)
    with fresh_store.session() as session:
        assert invites.list_invites(session)[0].uses_allowed == created.invite.uses_allowed == 2


def test_node_changes_journal_fail_and_gc_are_audited_once_and_dry_runs_not(
    fresh_store: Any, tmp_path: Path
) -> None:
    with fresh_store.session(write=True) as session:
        session.add(
            Node(
                id="nd_2",
                name="n2",
                credential_hash="x" * 64,
                created_at=clock.now(),
                labels={},
                capabilities=[],
            )
        )
    defaults = SandboxDefaults()
    with fresh_store.session(write=True) as session:
        operations.set_cordon(session, ME, "n2", True, dry_run=True)
        operations.set_cordon(session, ME, "n2", True)
        operations.rename_node(session, ME, "n2", "n3")
        rotated = operations.rotate_credential(session, ME, "n3")
        operations.fail_node_tasks(session, ME, "n3", "reimaged")
        operations.set_sandbox(
            session,
            ME,
            ["n3"],
            all_nodes=False,
            mode="strict",
            allowed_commands=["ls"],
            defaults=defaults,
        )
        operations.revoke_nodes(session, ME, ["n3"])
    gc = operations.run_gc(
        fresh_store,
        ME,
        "invites",
        mirrors_dir=tmp_path,
        lock_ttl_s=60,
        mirror_retention_s=60,
        invite_retention_s=60,
        audit_retention_s=60,
    )
    assert gc["count"] == 0
    deleted = operations.delete_node(fresh_store, ME, "n3", defaults, mirrors_dir=tmp_path)
    assert deleted.name == "n3"
    with fresh_store.session() as session:
        entries = audit.list_audit(session)
    assert [e.action for e in entries] == [
        "nodes.cordon",
        "nodes.rename",
        "nodes.rotate_credential",
        "journal.fail",
        "nodes.sandbox",
        "nodes.revoke",
        "gc.invites",
        "nodes.delete",
    ]
    assert rotated.node_credential
    assert not any(rotated.node_credential in json.dumps(e.detail) for e in entries)


def test_last_used_at_is_written_at_most_once_a_minute(fresh_store: Any) -> None:
    from datetime import timedelta

    from cortexctl.core import admin_tokens

    with fresh_store.session(write=True) as session:
        created = admin_tokens.create_admin_token(session, ME, name="t", role="viewer", ttl_s=60)
    token = created.admin_token
    assert admin_tokens.last_used_due(token)
    with fresh_store.session(write=True) as session:
        admin_tokens.touch_last_used(session, token.id)
    with fresh_store.session() as session:
        first = admin_tokens.authenticate_admin(session, created.token)
    assert first.last_used_at is not None and not admin_tokens.last_used_due(first)
    with fresh_store.session(write=True) as session:
        admin_tokens.touch_last_used(session, token.id)  # within the minute: no change
    with fresh_store.session() as session:
        again = admin_tokens.authenticate_admin(session, created.token)
    assert again.last_used_at == first.last_used_at
    later = first.last_used_at + timedelta(seconds=admin_tokens.LAST_USED_EVERY_S)
    assert admin_tokens.last_used_due(first, later)


def test_a_refused_actor_never_holds_the_secret() -> None:
    from cortexctl.core import admin_tokens

    actor = admin_tokens.refused_actor("cortex-admin.adm_abc.s3cret", "ipv4:127.0.0.1:5")
    assert (actor.name, actor.kind) == ("adm_abc", "token")
    assert "s3cret" not in repr(actor)
    assert admin_tokens.refused_actor("garbage", "p").name == "anonymous"


def test_certificate_roles_are_subject_role_pairs_with_one_role_each() -> None:
    from cortexctl.core.roles import parse_cert_roles

    entries = ["ops-laptop=viewer", " CN with = sign=Operator "]
    assert parse_cert_roles(entries) == {"ops-laptop": "viewer", "CN with = sign": "operator"}
    for bad, why in [
        ("ops", "expected SUBJECT=ROLE"),
        ("=viewer", "expected SUBJECT=ROLE"),
        ("ops=root", "the role is one of viewer, operator, admin"),
    ]:
        with pytest.raises(InvalidArgument, match=why):
            parse_cert_roles([bad])
    with pytest.raises(InvalidArgument, match="given two roles"):
        parse_cert_roles(["ops=viewer", "ops=admin"])
    assert parse_cert_roles(["ops=viewer", "ops=viewer"]) == {"ops": "viewer"}
