"""The agent's state dir: only its own, never through a symlink, one agent at a time."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cortexctl.agent.runner import Agent, AgentOptions
from cortexctl.agent.state import (
    CREDENTIAL_FILE,
    Membership,
    StateLock,
    check_state_dir,
    load_membership,
    save_membership,
)
from cortexctl.errors import Conflict, InvalidArgument, Unauthenticated

MEMBER = Membership(hub="h:1", node_id="nd_1", node_credential="cortex-node.nd_1.s", hub_id="x")


def test_a_new_state_dir_is_0700_and_the_credential_0600_under_any_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = save_membership(tmp_path / "state", MEMBER)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_membership(tmp_path / "state") == MEMBER


@pytest.mark.parametrize(("loose", "who"), [(0o770, "its group"), (0o707, "others")])
def test_a_state_dir_writable_by_others_is_refused(tmp_path: Path, loose: int, who: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, loose)
    with pytest.raises(InvalidArgument, match=f"writable by {who}.*chmod 700"):
        check_state_dir(state)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder to another user")
def test_a_state_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, -1)
    with pytest.raises(InvalidArgument, match="belongs to uid 65534"):
        check_state_dir(state)
    assert InvalidArgument.exit_code == 2


def test_the_credential_is_never_written_through_a_symlink(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (state / CREDENTIAL_FILE).symlink_to(victim)
    save_membership(state, MEMBER)
    assert victim.read_text() == "precious"
    assert not (state / CREDENTIAL_FILE).is_symlink()
    assert load_membership(state) == MEMBER


def test_a_symlinked_credential_is_refused_on_read(tmp_path: Path) -> None:
    state = tmp_path / "state"
    elsewhere = tmp_path / "elsewhere"
    save_membership(elsewhere, MEMBER)
    state.mkdir(mode=0o700)
    (state / CREDENTIAL_FILE).symlink_to(elsewhere / CREDENTIAL_FILE)
    with pytest.raises(InvalidArgument, match="symlink"):
        load_membership(state)


def test_two_agents_on_one_state_dir_the_second_refuses(tmp_path: Path) -> None:
    state = check_state_dir(tmp_path / "state")
    with StateLock(state), pytest.raises(Conflict, match=f"pid {os.getpid()}.*--state-dir"):
        StateLock(state).acquire()
    with StateLock(state):  # released: the next agent may start
        pass


def agent(tmp_path: Path, **kwargs: object) -> Agent:
    options = AgentOptions(hub="h:1", workspace=tmp_path, state_dir=tmp_path / "s", **kwargs)  # type: ignore[arg-type]
    return Agent(options)


STORED = Membership("h:1", "nd_1", "cortex-node.nd_1.s", node_name="build-01")


@pytest.mark.parametrize("source", ["flag", "file"])
def test_an_invite_is_not_ignored_when_a_credential_is_stored(tmp_path: Path, source: str) -> None:
    me = agent(tmp_path, token="cortex-invite.x.y", token_source=source)
    with pytest.raises(InvalidArgument, match=r"build-01 \(nd_1\).*--state-dir.*--rejoin"):
        me.membership_to_use(STORED)


def test_the_environments_invite_is_not_used_but_said_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    me = agent(tmp_path, token="cortex-invite.x.y", token_source="env")
    assert me.membership_to_use(STORED) == STORED
    assert "CORTEX_INVITE_TOKEN is not used" in caplog.text


def test_another_name_is_not_ignored_when_a_credential_is_stored(tmp_path: Path) -> None:
    assert agent(tmp_path, name="build-01").membership_to_use(STORED) == STORED
    with pytest.raises(InvalidArgument, match="--name build-02 would be ignored"):
        agent(tmp_path, name="build-02").membership_to_use(STORED)


def test_rejoin_discards_the_stored_credential_and_needs_an_invite(tmp_path: Path) -> None:
    fresh = agent(tmp_path, token="cortex-invite.x.y", token_source="file", rejoin=True)
    assert fresh.membership_to_use(STORED) is None
    with pytest.raises(InvalidArgument, match="needs an invite"):
        agent(tmp_path, rejoin=True).membership_to_use(STORED)
    with pytest.raises(Unauthenticated, match="--token-file"):
        agent(tmp_path).membership_to_use(None)
