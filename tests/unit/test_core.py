"""Core functions in-process against a real store (SQLite file, or PostgreSQL in CI)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from cortexctl.core import clock, features, invites, journal, nodes, presence
from cortexctl.core.admin_lock import admin_lock
from cortexctl.core.sandbox import SandboxDefaults
from cortexctl.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from cortexctl.store.engine import Store
from cortexctl.store.models import Invite

DEFAULTS = SandboxDefaults()


def join(store: Store, token: str, name: str = "n1") -> nodes.Joined:
    with store.session(write=True) as session:
        return nodes.join_with_invite(
            session,
            token,
            hostname="host",
            requested_name=name,
            agent_version="t",
            labels={},
            capabilities=list(features.POLICY_FEATURES),
        )


def new_invite(store: Store, **kwargs: Any) -> str:
    with store.session() as session:
        return invites.create_invite(session, ttl_s=kwargs.pop("ttl_s", 3600), **kwargs).token


def test_invite_token_is_shown_once_and_stored_as_a_hash(fresh_store: Store) -> None:
    token = new_invite(fresh_store)
    invite_id, secret = token.split(".")[1:]
    with fresh_store.session() as session:
        row = session.get(Invite, invite_id)
        assert row is not None
        assert secret not in row.secret_hash and len(row.secret_hash) == 64


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("used", "used up"),
        ("expired", "expired"),
        ("revoked", "revoked"),
        ("unknown", "unknown invite"),
        ("malformed", "malformed"),
    ],
)
def test_unusable_invites_say_why(fresh_store: Store, setup: str, message: str) -> None:
    token = new_invite(fresh_store)
    invite_id = token.split(".")[1]
    if setup == "used":
        join(fresh_store, token)
    elif setup == "expired":
        with fresh_store.session() as session:
            row = session.get(Invite, invite_id)
            assert row is not None
            row.expires_at = clock.now() - timedelta(seconds=1)
    elif setup == "revoked":
        with fresh_store.session() as session:
            invites.revoke_invite(session, invite_id)
    elif setup == "unknown":
        token = token[:-4] + "AAAA"
    else:
        token = "not-a-token"
    with pytest.raises(Unauthenticated, match=message):
        join(fresh_store, token, "n2")


def test_racing_joins_on_the_last_use_admit_exactly_one(fresh_store: Store) -> None:
    token = new_invite(fresh_store, uses=1)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def racer(index: int) -> None:
        barrier.wait()
        try:
            join(fresh_store, token, f"racer{index}")
            outcomes.append("joined")
        except Unauthenticated:
            outcomes.append("refused")

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["joined"] + ["refused"] * 7


def test_racing_joins_on_postgresql_admit_exactly_one(pg_url: str) -> None:
    from cortexctl.store.engine import upgrade

    store = Store(pg_url)
    try:
        upgrade(store)
        test_racing_joins_on_the_last_use_admit_exactly_one(store)
    finally:
        store.dispose()


def test_credentials_authenticate_until_revoked(fresh_store: Store) -> None:
    joined = join(fresh_store, new_invite(fresh_store))
    with fresh_store.session() as session:
        assert nodes.authenticate(session, joined.credential).id == joined.node.id
        with pytest.raises(Unauthenticated):
            nodes.authenticate(session, joined.credential[:-3] + "xyz")
    with fresh_store.session(write=True) as session:
        nodes.revoke_node(session, "n1")
    with fresh_store.session() as session, pytest.raises(PermissionDenied, match="revoked"):
        nodes.authenticate(session, joined.credential)


def test_node_names_are_cleaned_and_never_suffixed(fresh_store: Store) -> None:
    token = new_invite(fresh_store, uses=3)
    assert join(fresh_store, token, "web 01/../x").node.name == "web-01-..-x"
    with pytest.raises(AlreadyExists, match="already taken"):
        join(fresh_store, token, "web 01/../x")  # no silent "-2": the operator decides


def test_unconfigured_nodes_are_strict_and_sandbox_changes_bump_the_revision(
    fresh_store: Store,
) -> None:
    joined = join(fresh_store, new_invite(fresh_store))
    with fresh_store.session() as session:
        view = nodes.show_node(session, joined.node.id, DEFAULTS)
    assert (view.sandbox, view.sandbox_configured, view.policy_revision) == ("strict", False, 1)
    with fresh_store.session(write=True) as session:
        changed = nodes.set_sandbox(
            session,
            ["n1"],
            all_nodes=False,
            mode="permissive",
            allowed_commands=["git"],
            defaults=DEFAULTS,
        )
    assert (changed[0].sandbox, changed[0].allowed_commands, changed[0].revision) == (
        "permissive",
        ["git"],
        2,
    )
    with fresh_store.session(write=True) as session, pytest.raises(InvalidArgument):
        nodes.set_sandbox(
            session,
            ["n1"],
            all_nodes=False,
            mode="strict",
            allowed_commands=["/bin/sh"],
            defaults=DEFAULTS,
        )
    with fresh_store.session(write=True) as session, pytest.raises(NotFound):
        nodes.set_sandbox(
            session,
            ["nope"],
            all_nodes=False,
            mode="strict",
            allowed_commands=None,
            defaults=DEFAULTS,
        )


def test_task_state_machine(fresh_store: Store) -> None:
    joined = join(fresh_store, new_invite(fresh_store, sandbox="permissive"))
    with fresh_store.session() as session:
        node = nodes.resolve_node(session, "n1")
        task = journal.submit_task(session, node, script="true", defaults=DEFAULTS)
    assert task.state == journal.PENDING
    with fresh_store.session() as session:
        node = nodes.resolve_node(session, "n1")
        claimed = journal.claim_pending(session, node, hub_id="h", stream_id="s", defaults=DEFAULTS)
        assert [t.id for t in claimed] == [task.id]
        # A second claim finds nothing: a task is dispatched once.
        assert (
            journal.claim_pending(session, node, hub_id="h2", stream_id="s2", defaults=DEFAULTS)
            == []
        )
        assert journal.record_update(session, joined.node.id, task.id, journal.RUNNING)
        assert journal.record_update(
            session,
            joined.node.id,
            task.id,
            journal.SUCCEEDED,
            exit_code=0,
            stdout=b"x" * 10,
            max_output_bytes=4,
        )
        # Terminal is final: later reports and reports for other nodes are ignored.
        assert not journal.record_update(session, joined.node.id, task.id, journal.FAILED)
        assert not journal.record_update(session, "other", task.id, journal.RUNNING)
    with fresh_store.session() as session:
        done = journal.get_task(session, task.id)
    assert (done.state, done.stdout, done.output_truncated) == ("succeeded", "xxxx", True)
    with fresh_store.session() as session, pytest.raises(Conflict, match="already ended"):
        journal.cancel_task(session, task.id)


def test_fail_node_tasks_spares_a_newer_streams_work(fresh_store: Store) -> None:
    join(fresh_store, new_invite(fresh_store, sandbox="permissive"))
    with fresh_store.session() as session:
        node = nodes.resolve_node(session, "n1")
        old = journal.submit_task(session, node, script="a", defaults=DEFAULTS)
        journal.claim_pending(session, node, hub_id="h", stream_id="old", defaults=DEFAULTS)
        new = journal.submit_task(session, node, script="b", defaults=DEFAULTS)
        journal.claim_pending(session, node, hub_id="h", stream_id="new", defaults=DEFAULTS)
        assert journal.fail_node_tasks(session, node.id, "gone", stream_id="old") == 1
        assert journal.get_task(session, old.id).state == "failed"
        assert journal.get_task(session, new.id).state == "dispatched"
        assert journal.fail_node_tasks(session, node.id, "all") == 1


def test_forbidden_tasks_are_rejected_at_submission_and_dispatch(fresh_store: Store) -> None:
    join(fresh_store, new_invite(fresh_store, sandbox="permissive"))
    with fresh_store.session() as session:
        node = nodes.resolve_node(session, "n1")
        queued = journal.submit_task(session, node, script="echo", defaults=DEFAULTS)
    join(fresh_store, new_invite(fresh_store), "plain")
    with fresh_store.session() as session:
        plain = nodes.resolve_node(session, "plain")
        assert (
            journal.submit_task(session, plain, argv=["x"], defaults=DEFAULTS).state == "rejected"
        )
        assert (
            journal.submit_task(
                session,
                plain,
                argv=["x"],
                defaults=SandboxDefaults(mode="strict", allowed_commands=("x",)),
            ).state
            == "pending"
        )
    with fresh_store.session(write=True) as session:
        nodes.set_sandbox(
            session,
            ["n1"],
            all_nodes=False,
            mode="strict",
            allowed_commands=None,
            defaults=DEFAULTS,
        )
    with fresh_store.session() as session:
        node = nodes.resolve_node(session, "n1")
        assert (
            journal.claim_pending(session, node, hub_id="h", stream_id="s", defaults=DEFAULTS) == []
        )
        assert journal.get_task(session, queued.id).state == "rejected"


@pytest.mark.parametrize(
    ("argv", "script", "env", "cwd"),
    [
        ([], "", {}, ""),
        (["a"], "b", {}, ""),
        ([""], "", {}, ""),
        (["a"], "", {"A=B": "c"}, ""),
        (["a"], "", {}, "/etc"),
        (["a"], "", {}, "x/../../y"),
        (["a\0"], "", {}, ""),
    ],
)
def test_malformed_tasks_are_refused(
    argv: list[str], script: str, env: dict[str, str], cwd: str
) -> None:
    with pytest.raises(InvalidArgument):
        journal.check_task_shape(argv, script, env, cwd)


def test_presence_flush_and_status(fresh_store: Store) -> None:
    from cortexctl.core import hubs

    joined = join(fresh_store, new_invite(fresh_store))
    now = clock.now()
    with fresh_store.session() as session:
        hubs.register_hub(session, "hub1", "x")
        presence.flush_presence(
            session,
            [
                presence.PresenceUpdate(
                    node_id=joined.node.id,
                    hub_id="hub1",
                    connected_at=now,
                    last_heartbeat=now,
                    heartbeat_interval_s=1.0,
                )
            ],
        )
    with fresh_store.session() as session:
        assert presence.presence_of(session, [joined.node.id])[joined.node.id].status == "online"
        row = session.get(presence.Presence, joined.node.id)
        assert row is not None
        assert presence.status_of(row, True, now + timedelta(seconds=4)) == "stale"
        assert presence.status_of(row, True, now + timedelta(seconds=10)) == "offline"
        assert presence.status_of(row, False, now) == "offline"
        hubs.stop_hub(session, "hub1")
    with fresh_store.session() as session:
        assert presence.presence_of(session, [joined.node.id])[joined.node.id].status == "offline"


def test_admin_lock_serialises_runs(fresh_store: Store) -> None:
    with admin_lock(fresh_store, "gc-x") as first:
        assert first
        with admin_lock(fresh_store, "gc-x", wait_s=0.2) as second:
            assert not second
    with admin_lock(fresh_store, "gc-x", wait_s=0) as again:
        assert again
