"""Dispatch without a poll: with the hub's poll interval at 60 s, what the CLI writes
reaches a connected node anyway (PostgreSQL LISTEN/NOTIFY, SQLite data_version), on both
stores. Each deadline is far below the poll, so only the wake-up can meet it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cortexctl.errors import EXIT_REFUSED
from tests.conftest import wait_until
from tests.helpers import Mesh, cli_json, run_cli, running_mesh, slow_poll_env


@pytest.fixture
def slow_poll_mesh(
    each_store: str,
    tmp_path: Path,
    data_dir: Path,
    isolated_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Mesh]:
    env = slow_poll_env(each_store, data_dir, isolated_env, monkeypatch)
    with running_mesh(tmp_path, env) as mesh:
        yield mesh


def test_a_submitted_task_starts_and_its_result_reaches_wait_without_the_poll(
    slow_poll_mesh: Mesh,
) -> None:
    slow_poll_mesh.start_agent("n1", slow_poll_mesh.invite("--sandbox", "permissive"))
    # --wait-timeout far below the 60 s poll: exit 120 if the task waited for a poll.
    done = run_cli("tasks", "submit", "n1", "--wait", "--wait-timeout", "20s", "--", "true")
    assert done.exit_code == 0, done.stderr
    queued = run_cli("tasks", "submit", "n1", "--json", "--", "true")
    assert queued.exit_code == 0, queued.stderr
    task_id = json.loads(queued.stdout)["id"]
    wait_until(
        lambda: cli_json("tasks", "show", task_id)["state"] == "succeeded",
        10,
        "the second task to run without a poll",
    )


def test_a_policy_change_reaches_the_node_without_the_poll(slow_poll_mesh: Mesh) -> None:
    slow_poll_mesh.start_agent("n1", slow_poll_mesh.invite())
    changed = cli_json("nodes", "sandbox", "n1", "--permissive")
    wait_until(
        lambda: cli_json("nodes", "show", "n1")["policy_acked"] == changed[0]["revision"],
        10,
        "the node to acknowledge the new policy without a poll",
    )


def test_a_revocation_closes_the_stream_without_the_poll(slow_poll_mesh: Mesh) -> None:
    agent = slow_poll_mesh.start_agent("n1", slow_poll_mesh.invite())
    assert cli_json("nodes", "revoke", "n1", "--yes")["revoked"] is True
    assert agent.wait(20) == EXIT_REFUSED  # PERMISSION_DENIED at once; the agent gives up
    assert "revoked" in agent.log()
