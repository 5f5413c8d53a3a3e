"""OS containment of tasks: no_new_privs, rlimits, own session, bubblewrap (real processes)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from cortexctl.agent.executor import Policy, TaskOutcome, TaskRunner, TaskSpec
from cortexctl.agent.isolation import (
    BWRAP,
    NONE,
    Isolation,
    IsolationUnavailable,
    TaskLimits,
    choose_isolation,
    root_process_limit_warning,
)
from cortexctl.core import features

PERMISSIVE = Policy("permissive", (), 0, 0)


def need_bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("bubblewrap (bwrap) is required in CI and is not installed")
        pytest.skip("bubblewrap (bwrap) is not installed")
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "credential.json").write_text('{"node_credential": "cortex-node.SECRET"}')
    return state


def run(runner: TaskRunner, script: str, policy: Policy = PERMISSIVE) -> TaskOutcome:
    return asyncio.run(runner.run(TaskSpec("t", script=script), policy))


def test_every_task_runs_with_no_new_privs_in_its_own_session(workspace: Path) -> None:
    out = run(
        TaskRunner(workspace),
        "grep NoNewPrivs /proc/self/status; ps -o pid=,sid=,pgid= -p $$",
    )
    assert out.state == "succeeded", out.error
    lines = out.stdout.decode().splitlines()
    assert lines[0].split() == ["NoNewPrivs:", "1"]
    pid, sid, pgid = lines[1].split()
    assert pid == sid == pgid


def test_rlimits_of_the_policy_apply(workspace: Path) -> None:
    limits = TaskLimits(
        cpu_seconds=77, address_space_bytes=3 * 1024**3, file_size_bytes=4096, open_files=99
    )
    policy = replace(PERMISSIVE, limits=limits)
    out = run(TaskRunner(workspace), "ulimit -t; ulimit -v; ulimit -f; ulimit -n", policy)
    assert out.state == "succeeded", out.error
    # bash reports -v in KiB and -f in 512-byte blocks (POSIX mode off: 1024-byte).
    cpu, memory, size, files = out.stdout.decode().split()
    assert (cpu, memory, files) == ("77", str(3 * 1024**2), "99")
    assert int(size) * 1024 == 4096
    big = run(TaskRunner(workspace), "head -c 8192 /dev/zero > big; echo $?", policy)
    assert (workspace / "big").stat().st_size == 4096  # SIGXFSZ stopped it at the limit
    assert big.state == "succeeded" and big.stdout.strip() != b"0"


def unused_uid() -> int:
    """A uid no process runs as: RLIMIT_NPROC counts every process of the task's uid."""
    used = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            for line in status.read_text().splitlines():
                if line.startswith("Uid:"):
                    used.update(int(uid) for uid in line.split()[1:])
    return next(uid for uid in range(61_000, 62_000) if uid not in used)


def test_the_process_limit_applies_and_binds_a_task_that_is_not_root(workspace: Path) -> None:
    def fork_as(uid: int, processes: int) -> TaskOutcome:
        # setpriv makes the task's shell that uid (one process), and that shell forks once.
        script = f"""ulimit -u
            setpriv --reuid={uid} --regid={uid} --clear-groups -- /bin/sh -c '(true) && echo forked'
            (true) && echo root-forked"""
        return run(
            TaskRunner(workspace),
            script,
            replace(PERMISSIVE, limits=TaskLimits(processes=processes)),
        )

    if os.geteuid() != 0:
        out = run(
            TaskRunner(workspace), "ulimit -u", replace(PERMISSIVE, limits=TaskLimits(processes=7))
        )
        assert out.stdout.split() == [b"7"]
        pytest.skip("only root can run the task as another uid to see the limit bind")
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run the task as another uid")
    uid = unused_uid()
    bound = fork_as(uid, 1)
    assert bound.state == "succeeded", bound.error
    # The limit is set; the uid's one process may not fork; root is not bound at all.
    assert bound.stdout.decode().split() == ["1", "root-forked"]
    assert b"fork" in bound.stderr.lower()
    control = fork_as(uid, 2)
    assert control.stdout.decode().split() == ["2", "forked", "root-forked"]


def test_a_root_agent_is_told_the_process_limit_does_not_bind() -> None:
    why = root_process_limit_warning(TaskLimits(processes=4096), 0)
    assert why is not None and "RLIMIT_NPROC" in why and "root" in why
    assert root_process_limit_warning(TaskLimits(processes=4096), 1000) is None
    assert root_process_limit_warning(TaskLimits(), 0) is None


def test_an_unstartable_program_still_fails_with_the_os_reason(workspace: Path) -> None:
    out = asyncio.run(TaskRunner(workspace).run(TaskSpec("t", argv=("./nope-x",)), PERMISSIVE))
    assert out.state == "rejected"
    (workspace / "plain").write_text("#!/bin/sh\necho hi\n")
    out = asyncio.run(TaskRunner(workspace).run(TaskSpec("t", argv=("./plain",)), PERMISSIVE))
    assert (out.state, out.exit_code) == ("failed", -1)
    assert "permission denied" in out.error.lower()


def test_network_denial_without_bubblewrap_is_refused_not_ignored(workspace: Path) -> None:
    policy = replace(PERMISSIVE, deny_network=True)
    out = run(TaskRunner(workspace), "true", policy)
    assert out.state == "rejected" and "bubblewrap" in out.error


def test_isolation_none_reports_it_and_no_network_feature(
    workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    isolation = choose_isolation(NONE, workspace, [workspace.parent / "state"])
    assert isolation.level == NONE
    assert features.ISOLATION_NONE in isolation.capabilities()
    assert features.POLICY_NETWORK not in isolation.capabilities()
    assert "credential" in caplog.text


def test_auto_without_bwrap_warns_that_tasks_can_read_and_write_the_credential(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PATH", str(workspace))  # no bwrap to be found
    assert choose_isolation("auto", workspace, []).level == NONE
    assert "can then read and write" in caplog.text and "credential" in caplog.text
    with pytest.raises(IsolationUnavailable, match="not installed"):
        choose_isolation("bwrap", workspace, [])


def bwrap_runner(workspace: Path, state_dir: Path) -> TaskRunner:
    need_bwrap()
    isolation = choose_isolation("auto", workspace, [state_dir])
    assert isolation.level == BWRAP
    assert features.ISOLATION_BWRAP in isolation.capabilities()
    assert features.POLICY_NETWORK in isolation.capabilities()
    return TaskRunner(workspace, isolation=isolation)


def test_bwrap_workspace_writable_rest_read_only_state_dir_hidden(
    workspace: Path, state_dir: Path, tmp_path: Path
) -> None:
    runner = bwrap_runner(workspace, state_dir)
    outside = tmp_path / "outside"
    outside.mkdir()
    script = (
        "echo in > inside.txt; "
        f"echo out > {outside}/x 2>/dev/null || echo outside-refused; "
        "echo etc > /etc/cortex-canary 2>/dev/null || echo etc-refused; "
        f"cat {state_dir}/credential.json 2>/dev/null || echo credential-hidden; "
        f"ls -A {state_dir} | wc -l; "
        "echo tmp > /tmp/private && cat /tmp/private; "
        "ps -e -o pid= | wc -l"
    )
    out = run(runner, script)
    assert out.state == "succeeded", (out.error, out.stderr)
    lines = out.stdout.decode().split()
    assert lines[:5] == ["outside-refused", "etc-refused", "credential-hidden", "0", "tmp"]
    assert (workspace / "inside.txt").read_text() == "in\n"
    assert not (outside / "x").exists()
    assert not Path("/etc/cortex-canary").exists()
    assert b"SECRET" not in out.stdout + out.stderr
    assert not Path("/tmp/private").exists()
    assert int(lines[-1]) <= 4  # its own pid namespace: bwrap, bash, ps, wc


def test_bwrap_no_network_blocks_a_loopback_port(workspace: Path, state_dir: Path) -> None:
    runner = bwrap_runner(workspace, state_dir)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        probe = f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected || echo refused"
        allowed = run(runner, probe)
        denied = run(runner, probe, replace(PERMISSIVE, deny_network=True))
    assert allowed.stdout.strip() == b"connected", allowed.stderr
    assert denied.stdout.strip() == b"refused", denied.stderr


def test_bwrap_task_dies_with_its_pid_namespace_even_after_setsid(
    workspace: Path, state_dir: Path
) -> None:
    runner = bwrap_runner(workspace, state_dir)
    marker = f"sleep 300.{os.getpid()}"  # unique, so no other test's sleep is counted
    out = run(runner, f"setsid {marker} & echo started")
    assert out.state == "succeeded"
    # The escaped sleep does not survive: the namespace died with the task.
    survivors = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p) == marker]
    assert survivors == []


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def test_isolation_is_a_plain_value() -> None:
    assert Isolation().level == NONE
    assert Isolation().command(["ls"], workspace=Path("/"), cwd=Path("/"), deny_network=True) == [
        "ls"
    ]
