"""Tests for the sandboxed task executor, with real subprocesses."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from cortexctl.agent.executor import (
    OUTPUT_HARD_CAP,
    Policy,
    TaskOutcome,
    TaskRejected,
    TaskRunner,
    TaskSpec,
    effective_timeout,
    output_cap,
    prepare_command,
)

T = TypeVar("T")

# Each line records one process of the task so the test can prove it died.
ORPHAN_SCRIPT = (
    'sleep 300 & echo $! >> "$PIDFILE"; sleep 300 & echo $! >> "$PIDFILE"; echo $$ >> "$PIDFILE";'
    " wait"
)


def strict(*allowed: str, max_runtime_s: int = 0, max_output_bytes: int = 0) -> Policy:
    return Policy("strict", tuple(allowed), max_runtime_s, max_output_bytes)


def permissive(max_runtime_s: int = 0, max_output_bytes: int = 0) -> Policy:
    return Policy("permissive", (), max_runtime_s, max_output_bytes)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def run(runner: TaskRunner, spec: TaskSpec, policy: Policy) -> TaskOutcome:
    return asyncio.run(runner.run(spec, policy))


def arun(fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await fn()

    return asyncio.run(main())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # An unreaped zombie still answers kill(0); PID 1 in a container may never reap it.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def assert_all_dead(pids: list[int], deadline_s: float = 5.0) -> None:
    deadline = time.monotonic() + deadline_s
    alive = [p for p in pids if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = [p for p in alive if _alive(p)]
    for pid in alive:  # don't leave junk behind when the assertion fails
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"processes survived: {alive}"


def read_pids(path: Path) -> list[int]:
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    return [int(line) for line in lines if line.endswith("\n")]


async def wait_for_pids(path: Path, count: int, deadline_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        pids = read_pids(path)
        if len(pids) >= count:
            return pids
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never got {count} pids: {read_pids(path)}")


# --------------------------------------------------------------------------- STRICT


def test_strict_allowed_argv_runs(workspace: Path) -> None:
    out = run(TaskRunner(workspace), TaskSpec("t1", argv=("echo", "hello")), strict("echo"))
    assert out == TaskOutcome("succeeded", 0, b"hello\n", b"", False, "")


def test_strict_executes_resolved_absolute_path(workspace: Path) -> None:
    argv, cwd, _ = prepare_command(strict("echo"), TaskSpec("t", argv=("echo", "x")), workspace)
    assert argv == [shutil.which("echo"), "x"]
    assert os.path.isabs(argv[0])
    assert cwd == Path(os.path.realpath(workspace))


def test_strict_rejects_script(workspace: Path) -> None:
    out = run(TaskRunner(workspace), TaskSpec("t", script="echo hi"), strict("echo"))
    assert out.state == "rejected"
    assert out.exit_code == -1
    assert "scripts need PERMISSIVE sandbox mode; this node is STRICT" in out.error


def test_strict_rejects_disallowed_command(workspace: Path) -> None:
    out = run(TaskRunner(workspace), TaskSpec("t", argv=("ls",)), strict("echo"))
    assert out.state == "rejected"
    assert "'ls' is not in this node's allowed_commands" in out.error
    assert "'echo'" in out.error


@pytest.mark.parametrize("argv0", ["/bin/echo", "./echo", "../echo", "bin/echo", "", ".", ".."])
def test_strict_rejects_non_bare_names(workspace: Path, argv0: str) -> None:
    # Even listing the path itself in allowed_commands must not make a path acceptable.
    policy = strict("echo", argv0)
    with pytest.raises(TaskRejected, match="bare"):
        prepare_command(policy, TaskSpec("t", argv=(argv0, "x")), workspace)


def test_strict_resolves_on_agent_path_not_task_path(workspace: Path) -> None:
    fake = workspace / "echo"
    fake.write_text("#!/bin/sh\necho pwned\n")
    fake.chmod(0o755)
    spec = TaskSpec("t", argv=("echo", "ok"), env={"PATH": str(workspace)})
    with pytest.raises(TaskRejected, match="PATH are not in this node's allowed_env"):
        prepare_command(strict("echo"), spec, workspace)
    # Even where the operator allows the task to set PATH, argv[0] comes from the agent's.
    allowing = replace(strict("echo"), allowed_env=("PATH",))
    argv, _, env = prepare_command(allowing, spec, workspace)
    assert argv[0] == shutil.which("echo")
    assert env["PATH"] == str(workspace)


def test_strict_ignores_agent_path_entries_inside_the_workspace(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = workspace / "echo"
    fake.write_text("#!/bin/sh\necho pwned\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{workspace}:.:{os.environ['PATH']}")
    argv, _, env = prepare_command(strict("echo"), TaskSpec("t", argv=("echo",)), workspace)
    assert argv[0] == shutil.which("echo", path=os.environ["PATH"].split(":", 2)[2])
    assert str(workspace) not in env["PATH"].split(":") and "." not in env["PATH"].split(":")


def test_strict_refuses_env_names_not_allowed(workspace: Path) -> None:
    for name in ("LD_PRELOAD", "BASH_ENV", "BASH_FUNC_echo%%", "GIT_CONFIG_COUNT", "FOO"):
        spec = TaskSpec("t", argv=("echo",), env={name: "x"})
        with pytest.raises(TaskRejected, match="allowed_env"):
            prepare_command(strict("echo"), spec, workspace)
        prepare_command(permissive(), spec, workspace)


def test_strict_env_is_minimal_plus_allowed_names(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("BASH_ENV", "LC_ALL", "TZ", "TERM", "PYTHONPATH", "CORTEX_SECRET_TEST"):
        monkeypatch.setenv(name, "from-the-agent")
    policy = replace(strict("env"), allowed_env=("GREETING", "OTHER"))
    spec = TaskSpec("t-env", argv=("env",), env={"GREETING": "hi"})
    _, _, env = prepare_command(policy, spec, workspace)
    assert set(env) == {"PATH", "HOME", "LANG", "CORTEX_TASK_ID", "GREETING"}
    assert env["LANG"] == "C.UTF-8" and env["GREETING"] == "hi"
    assert "from-the-agent" not in env.values()


def test_strict_argv_pins(workspace: Path) -> None:
    policy = replace(strict("ls"), allowed_prefixes=(("git", "status"), ("echo", "-n")))
    prepare_command(policy, TaskSpec("t", argv=("git", "status", "--short")), workspace)
    prepare_command(policy, TaskSpec("t", argv=("echo", "-n", "x")), workspace)
    for argv in [("git",), ("git", "-c", "core.pager=sh", "status"), ("git", "log"), ("echo",)]:
        with pytest.raises(TaskRejected, match="allowed prefix"):
            prepare_command(policy, TaskSpec("t", argv=argv), workspace)


def test_allowed_but_missing_command_rejected(workspace: Path) -> None:
    with pytest.raises(TaskRejected, match="not found on this node's PATH"):
        prepare_command(
            strict("no-such-cmd-xyz"), TaskSpec("t", argv=("no-such-cmd-xyz",)), workspace
        )


@pytest.mark.parametrize(
    "spec",
    [TaskSpec("t"), TaskSpec("t", argv=("echo",), script="echo hi")],
    ids=["neither", "both"],
)
def test_exactly_one_of_argv_or_script(workspace: Path, spec: TaskSpec) -> None:
    for policy in (strict("echo"), permissive()):
        with pytest.raises(TaskRejected, match="a task needs exactly one of argv or script"):
            prepare_command(policy, spec, workspace)


def test_unknown_mode_fails_closed(workspace: Path) -> None:
    policy = Policy("yolo", ("echo",), 0, 0)
    with pytest.raises(TaskRejected, match="unknown"):
        prepare_command(policy, TaskSpec("t", argv=("echo",)), workspace)


# --------------------------------------------------------------------------- PERMISSIVE


def test_permissive_script_runs_with_bash(workspace: Path) -> None:
    spec = TaskSpec("t", script='echo "$BASH_VERSION" | cut -c1; echo err >&2; exit 0')
    out = run(TaskRunner(workspace), spec, permissive())
    assert out.state == "succeeded"
    assert out.stdout.strip().isdigit()
    assert out.stderr == b"err\n"


def test_permissive_script_argv_shape(workspace: Path) -> None:
    argv, _, _ = prepare_command(permissive(), TaskSpec("t", script="true"), workspace)
    assert argv == [shutil.which("bash"), "--noprofile", "--norc", "-c", "true"]


def test_permissive_relative_path_resolved_from_cwd(workspace: Path) -> None:
    (workspace / "sub").mkdir()
    tool = workspace / "sub" / "tool.sh"
    tool.write_text('#!/bin/sh\necho tool "$@"\n')
    tool.chmod(0o755)
    spec = TaskSpec("t", argv=("./tool.sh", "a b"), cwd="sub")
    out = run(TaskRunner(workspace), spec, permissive())
    assert out.state == "succeeded", out.error
    assert out.stdout == b"tool a b\n"


def test_argv_is_not_run_through_a_shell(workspace: Path) -> None:
    spec = TaskSpec("t", argv=("echo", "$HOME; echo injected"))
    out = run(TaskRunner(workspace), spec, permissive())
    assert out.stdout == b"$HOME; echo injected\n"


def test_spawn_exec_format_error_fails(workspace: Path) -> None:
    junk = workspace / "junk"
    junk.write_bytes(b"\x00\x01\x02 not a program")
    junk.chmod(0o755)
    out = run(TaskRunner(workspace), TaskSpec("t", argv=("./junk",)), permissive())
    assert out.state == "failed"
    assert out.exit_code == -1
    assert "exec format error" in out.error.lower()


def test_spawn_permission_denied_fails(workspace: Path) -> None:
    (workspace / "plain").write_text("#!/bin/sh\necho hi\n")
    out = run(TaskRunner(workspace), TaskSpec("t", argv=("./plain",)), permissive())
    assert out.state == "failed"
    assert out.exit_code == -1
    assert "permission denied" in out.error.lower()


def test_permissive_missing_command_rejected(workspace: Path) -> None:
    out = run(TaskRunner(workspace), TaskSpec("t", argv=("./nope",)), permissive())
    assert out.state == "rejected"
    assert "does not exist" in out.error


# --------------------------------------------------------------------------- cwd


@pytest.mark.parametrize("cwd", ["..", "sub/../..", "sub/../sub"])
def test_cwd_dotdot_rejected(workspace: Path, cwd: str) -> None:
    (workspace / "sub").mkdir()
    with pytest.raises(TaskRejected, match=r"'\.\.'"):
        prepare_command(permissive(), TaskSpec("t", argv=("true",), cwd=cwd), workspace)


def test_cwd_absolute_rejected(workspace: Path) -> None:
    spec = TaskSpec("t", argv=("true",), cwd=str(workspace))
    with pytest.raises(TaskRejected, match="absolute"):
        prepare_command(permissive(), spec, workspace)


def test_cwd_symlink_out_rejected(workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace / "link").symlink_to(outside)
    out = run(TaskRunner(workspace), TaskSpec("t", argv=("pwd",), cwd="link"), permissive())
    assert out.state == "rejected"
    assert "outside the workspace" in out.error


def test_cwd_symlink_inside_allowed(workspace: Path) -> None:
    (workspace / "real").mkdir()
    (workspace / "alias").symlink_to(workspace / "real")
    _, cwd, _ = prepare_command(permissive(), TaskSpec("t", argv=("true",), cwd="alias"), workspace)
    assert cwd == Path(os.path.realpath(workspace / "real"))


def test_cwd_missing_rejected(workspace: Path) -> None:
    with pytest.raises(TaskRejected, match="does not exist in the workspace"):
        prepare_command(permissive(), TaskSpec("t", argv=("true",), cwd="nope"), workspace)


def test_task_runs_in_cwd(workspace: Path) -> None:
    (workspace / "a" / "b").mkdir(parents=True)
    out = run(TaskRunner(workspace), TaskSpec("t", argv=("pwd",), cwd="a/b"), strict("pwd"))
    assert out.stdout.decode().strip() == os.path.realpath(workspace / "a" / "b")


# --------------------------------------------------------------------------- environment


def test_env_scrubbed(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORTEX_SECRET_TEST", "hunter2")
    spec = TaskSpec("t-env", argv=("env",), env={"GREETING": "hi there"})
    out = run(TaskRunner(workspace), spec, permissive())
    assert out.state == "succeeded", out.error
    env = dict(line.split("=", 1) for line in out.stdout.decode().splitlines())
    assert "CORTEX_SECRET_TEST" not in env
    assert b"hunter2" not in out.stdout
    assert env["HOME"] == os.path.realpath(workspace)
    assert env["GREETING"] == "hi there"
    assert env["CORTEX_TASK_ID"] == "t-env"
    assert set(env) <= {
        "PATH",
        "LANG",
        "LC_ALL",
        "TZ",
        "TERM",
        "HOME",
        "CORTEX_TASK_ID",
        "GREETING",
    }


def test_env_default_path(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATH", raising=False)
    _, _, env = prepare_command(permissive(), TaskSpec("t", script="true"), workspace)
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"


@pytest.mark.parametrize(
    "env",
    [{"": "x"}, {"A=B": "x"}, {"A\0B": "x"}, {"A": "x\0y"}],
    ids=["empty-key", "eq-key", "nul-key", "nul-value"],
)
def test_bad_env_rejected(workspace: Path, env: dict[str, str]) -> None:
    with pytest.raises(TaskRejected, match="NUL|invalid"):
        prepare_command(permissive(), TaskSpec("t", argv=("true",), env=env), workspace)


# --------------------------------------------------------------------------- limits


def test_effective_timeout_and_output_cap() -> None:
    assert effective_timeout(TaskSpec("t", timeout_s=0), permissive(max_runtime_s=0)) is None
    assert effective_timeout(TaskSpec("t", timeout_s=5), permissive(max_runtime_s=0)) == 5
    assert effective_timeout(TaskSpec("t", timeout_s=0), permissive(max_runtime_s=7)) == 7
    assert effective_timeout(TaskSpec("t", timeout_s=9), permissive(max_runtime_s=7)) == 7
    assert effective_timeout(TaskSpec("t", timeout_s=3), permissive(max_runtime_s=7)) == 3
    assert output_cap(permissive(max_output_bytes=0)) == OUTPUT_HARD_CAP
    assert output_cap(permissive(max_output_bytes=10)) == 10
    assert output_cap(permissive(max_output_bytes=OUTPUT_HARD_CAP * 2)) == OUTPUT_HARD_CAP


def test_timeout_kills_group(workspace: Path) -> None:
    spec = TaskSpec("t", script=ORPHAN_SCRIPT, env={"PIDFILE": "pids"}, timeout_s=1)
    out = run(TaskRunner(workspace), spec, permissive(max_runtime_s=60))
    assert out.state == "timed_out"
    assert out.error == "timed out after 1s"
    assert out.exit_code < 0
    pids = read_pids(workspace / "pids")
    assert len(pids) == 3
    assert_all_dead(pids)


def test_background_children_die_when_main_process_exits(workspace: Path) -> None:
    script = 'sleep 300 & echo $! >> "$PIDFILE"; echo done'
    spec = TaskSpec("t", script=script, env={"PIDFILE": "pids"})
    out = run(TaskRunner(workspace), spec, permissive())
    assert out.state == "succeeded"
    assert out.stdout == b"done\n"
    assert_all_dead(read_pids(workspace / "pids"))


def test_cancel(workspace: Path) -> None:
    runner = TaskRunner(workspace)
    spec = TaskSpec("t-cancel", script=ORPHAN_SCRIPT, env={"PIDFILE": "pids"})

    async def scenario() -> tuple[TaskOutcome, list[int]]:
        assert runner.cancel("t-cancel", "too early") is False
        task = asyncio.create_task(runner.run(spec, permissive()))
        pids = await wait_for_pids(workspace / "pids", 3)
        assert runner.running == 1
        assert runner.cancel("t-cancel", "operator asked") is True
        out = await task
        assert runner.running == 0
        assert runner.cancel("t-cancel", "again") is False
        return out, pids

    out, pids = arun(scenario)
    assert out.state == "cancelled"
    assert out.error == "operator asked"
    assert_all_dead(pids)


def test_duplicate_task_id_rejected(workspace: Path) -> None:
    runner = TaskRunner(workspace)
    spec = TaskSpec("dup", script=ORPHAN_SCRIPT, env={"PIDFILE": "pids"})

    async def scenario() -> tuple[TaskOutcome, TaskOutcome]:
        first = asyncio.create_task(runner.run(spec, permissive()))
        await wait_for_pids(workspace / "pids", 3)
        second = await runner.run(spec, permissive())
        runner.cancel("dup", "done")
        return await first, second

    first, second = arun(scenario)
    assert second.state == "rejected"
    assert "already running" in second.error
    assert first.state == "cancelled"


def test_output_cap_truncates_and_child_finishes(workspace: Path) -> None:
    # 1 MiB is far past any pipe buffer: the child only finishes if we keep draining.
    script = "yes | head -c 1048576; echo finished >&2"
    out = run(
        TaskRunner(workspace), TaskSpec("t", script=script), permissive(max_output_bytes=1000)
    )
    assert out.state == "succeeded", out.error
    assert out.output_truncated is True
    assert out.stdout == b"y\n" * 500
    assert out.stderr == b"finished\n"


def test_output_uncapped_keeps_all(workspace: Path) -> None:
    script = "yes | head -c 300000"
    out = run(TaskRunner(workspace), TaskSpec("t", script=script), permissive())
    assert out.output_truncated is False
    assert len(out.stdout) == 300000


def test_nonzero_exit_fails(workspace: Path) -> None:
    out = run(TaskRunner(workspace), TaskSpec("t", script="echo oops >&2; exit 3"), permissive())
    assert out.state == "failed"
    assert out.exit_code == 3
    assert out.error == "exited with code 3"
    assert out.stderr == b"oops\n"


def test_killed_by_signal_fails(workspace: Path) -> None:
    out = run(TaskRunner(workspace), TaskSpec("t", script="kill -TERM $$"), permissive())
    assert out.state == "failed"
    assert out.exit_code == -signal.SIGTERM
    assert "SIGTERM" in out.error


def test_stdin_is_devnull(workspace: Path) -> None:
    out = run(TaskRunner(workspace), TaskSpec("t", argv=("cat",)), strict("cat"))
    assert out == TaskOutcome("succeeded", 0, b"", b"", False, "")


def test_shutdown_kills_all(workspace: Path) -> None:
    runner = TaskRunner(workspace)

    async def scenario() -> tuple[list[TaskOutcome], list[int], TaskOutcome]:
        tasks = [
            asyncio.create_task(
                runner.run(
                    TaskSpec(name, script=ORPHAN_SCRIPT, env={"PIDFILE": name}), permissive()
                )
            )
            for name in ("a", "b")
        ]
        pids = [
            *await wait_for_pids(workspace / "a", 3),
            *await wait_for_pids(workspace / "b", 3),
        ]
        assert runner.running == 2
        await runner.shutdown()
        assert runner.running == 0
        assert all(t.done() for t in tasks)
        late = await runner.run(TaskSpec("late", argv=("true",)), permissive())
        return [t.result() for t in tasks], pids, late

    outcomes, pids, late = arun(scenario)
    assert [o.state for o in outcomes] == ["cancelled", "cancelled"]
    assert late.state == "cancelled"
    assert late.exit_code == -1
    assert_all_dead(pids)


def test_caller_cancellation_kills_group(workspace: Path) -> None:
    runner = TaskRunner(workspace)
    spec = TaskSpec("t", script=ORPHAN_SCRIPT, env={"PIDFILE": "pids"})

    async def scenario() -> list[int]:
        task = asyncio.create_task(runner.run(spec, permissive()))
        pids = await wait_for_pids(workspace / "pids", 3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert runner.running == 0
        return pids

    assert_all_dead(arun(scenario))
