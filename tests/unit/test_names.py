"""Names and labels are the operator's: core rules for joins against a real store."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete

from cortexctl.core import invites, nodes
from cortexctl.core.labels import node_labels
from cortexctl.errors import AlreadyExists, InvalidArgument
from cortexctl.store.engine import Store
from cortexctl.store.models import Invite, Node


def join(store: Store, token: str, name: str = "", **kwargs: Any) -> nodes.Joined:
    with store.session(write=True) as session:
        return nodes.join_with_invite(
            session,
            token,
            hostname=kwargs.pop("hostname", "host"),
            requested_name=name,
            agent_version="t",
            labels=kwargs.pop("labels", {}),
            capabilities=[],
        )


def new_invite(store: Store, **kwargs: Any) -> str:
    with store.session() as session:
        return invites.create_invite(session, ttl_s=3600, **kwargs).token


def uses_count(store: Store, token: str) -> int:
    with store.session() as session:
        invite = session.get(Invite, token.split(".")[1])
        assert invite is not None
        return invite.uses_count


def test_a_name_in_use_is_refused_and_the_invite_use_is_not_spent(fresh_store: Store) -> None:
    join(fresh_store, new_invite(fresh_store), "build-01")
    token = new_invite(fresh_store, uses=2)
    with pytest.raises(AlreadyExists, match="already taken.*not spent"):
        join(fresh_store, token, "build-01")
    assert uses_count(fresh_store, token) == 0
    assert join(fresh_store, token, "build-02").node.name == "build-02"
    assert uses_count(fresh_store, token) == 1


def test_a_revoked_nodes_name_stays_taken_until_the_node_is_deleted(fresh_store: Store) -> None:
    join(fresh_store, new_invite(fresh_store), "build-01")
    with fresh_store.session(write=True) as session:
        nodes.revoke_node(session, "build-01")
    token = new_invite(fresh_store)
    with pytest.raises(AlreadyExists):
        join(fresh_store, token, "build-01")
    assert uses_count(fresh_store, token) == 0
    with fresh_store.session(write=True) as session:  # what `nodes delete` does
        session.execute(delete(Node).where(Node.name == "build-01"))
    assert join(fresh_store, token, "build-01").node.name == "build-01"


def test_the_hostname_fallback_is_never_suffixed(fresh_store: Store) -> None:
    token = new_invite(fresh_store, uses=2)
    assert join(fresh_store, token, hostname="web").node.name == "web"
    with pytest.raises(AlreadyExists):
        join(fresh_store, token, hostname="web")


def test_an_invite_can_fix_the_name(fresh_store: Store) -> None:
    token = new_invite(fresh_store, name="build-01")
    with pytest.raises(InvalidArgument, match="names the node 'build-01'"):
        join(fresh_store, token, "laptop")
    assert uses_count(fresh_store, token) == 0
    assert join(fresh_store, token).node.name == "build-01"


def test_a_fixed_name_is_for_one_free_name(fresh_store: Store) -> None:
    with pytest.raises(InvalidArgument, match="--uses 1"):
        new_invite(fresh_store, name="build-01", uses=2)
    with pytest.raises(InvalidArgument, match="bad --name"):
        new_invite(fresh_store, name="bad name")
    join(fresh_store, new_invite(fresh_store), "build-01")
    with pytest.raises(AlreadyExists, match="taken"):
        new_invite(fresh_store, name="build-01")


def test_an_invite_can_fix_a_prefix(fresh_store: Store) -> None:
    token = new_invite(fresh_store, uses=4, name_prefix="build-")
    with pytest.raises(InvalidArgument, match="starting with 'build-'"):
        join(fresh_store, token, "laptop")
    assert join(fresh_store, token, "build-07").node.name == "build-07"
    assert join(fresh_store, token, hostname="ci-box").node.name == "build-ci-box"
    assert join(fresh_store, token, hostname="build-09").node.name == "build-09"
    assert uses_count(fresh_store, token) == 3


def test_invite_labels_cannot_be_overridden_and_own_labels_are_marked(
    fresh_store: Store,
) -> None:
    token = new_invite(fresh_store, labels={"zone": "eu", "role": "ci"})
    joined = join(fresh_store, token, "n1", labels={"zone": "us", "gpu": "yes"})
    with fresh_store.session() as session:
        view = nodes.show_node(session, joined.node.id, nodes.SandboxDefaults())
    assert view.trusted_labels == {"zone": "eu", "role": "ci"}
    assert view.self_labels == {"zone": "us", "gpu": "yes"}
    assert view.labels == {"zone": "eu", "role": "ci", "gpu": "yes"}  # trusted wins

    labels = node_labels(joined.node)
    assert labels.origin("zone") == "trusted" and labels.origin("gpu") == "self-reported"
    # Selectors that change a sandbox or revoke see self-reported labels only when asked.
    assert labels.matches({"role": "ci"}, include_self_reported=False)
    assert not labels.matches({"gpu": "yes"}, include_self_reported=False)
    assert labels.matches({"gpu": "yes"}, include_self_reported=True)
    assert not labels.matches({"zone": "us"}, include_self_reported=True)


def test_a_rejoin_changes_only_the_self_reported_labels(fresh_store: Store) -> None:
    token = new_invite(fresh_store, labels={"zone": "eu"})
    joined = join(fresh_store, token, "n1")
    with fresh_store.session(write=True) as session:
        node = nodes.rejoin(
            session,
            joined.credential,
            hostname="host",
            agent_version="t",
            labels={"zone": "us", "gpu": "yes"},
            capabilities=[],
        )
        assert node.labels == {"zone": "eu"}
        assert node.self_labels == {"zone": "us", "gpu": "yes"}


def test_the_migration_keeps_only_invite_labels_trusted(tmp_path: Any) -> None:
    import sqlalchemy as sa

    from cortexctl.store.engine import upgrade

    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        upgrade(store, "0001")
        with store.engine.begin() as connection:
            now = "2026-01-01 00:00:00"
            connection.execute(
                sa.text(
                    "INSERT INTO invites (id, secret_hash, created_at, expires_at, "
                    "uses_allowed, uses_count, labels, note) VALUES ('inv_1', 'h', :t, :t, "
                    "1, 1, '{\"zone\": \"eu\"}', '')"
                ),
                {"t": now},
            )
            for node_id, invite_id in (("nd_1", "inv_1"), ("nd_2", "inv_gone")):
                connection.execute(
                    sa.text(
                        "INSERT INTO nodes (id, name, hostname, agent_version, labels, "
                        "capabilities, credential_hash, invite_id, policy_revision, "
                        "created_at) VALUES (:id, :id, '', '', "
                        '\'{"zone": "eu", "gpu": "yes"}\', \'[]\', \'h\', :inv, 1, :t)'
                    ),
                    {"id": node_id, "inv": invite_id, "t": now},
                )
        upgrade(store)
        with store.session() as session:
            kept = session.get(Node, "nd_1")
            orphan = session.get(Node, "nd_2")
            assert kept is not None and orphan is not None
            assert (kept.labels, kept.self_labels) == ({"zone": "eu"}, {"gpu": "yes"})
            assert (orphan.labels, orphan.self_labels) == ({}, {"zone": "eu", "gpu": "yes"})
    finally:
        store.dispose()


def test_selectors_that_act_match_self_reported_labels_only_when_asked(
    fresh_store: Store,
) -> None:
    from cortexctl.core.selectors import parse_selector

    join(fresh_store, new_invite(fresh_store, labels={"zone": "eu"}), "trusted")
    join(fresh_store, new_invite(fresh_store), "claims", labels={"zone": "eu"})
    wanted = parse_selector("zone=eu")
    with fresh_store.session(write=True) as session:
        acted = nodes.set_sandbox(
            session,
            [],
            all_nodes=False,
            mode="permissive",
            allowed_commands=None,
            defaults=nodes.SandboxDefaults(),
            selector=wanted,
            dry_run=True,
        )
        assert [change.name for change in acted] == ["trusted"]
        revoked = nodes.revoke_nodes(
            session, [], selector=wanted, include_self_reported=True, dry_run=True
        )
        assert [r.name for r in revoked] == ["claims", "trusted"]
