"""Sandboxed task executor for the reference node agent (POSIX only, plain asyncio).

A task is either an argv (run directly, never through a shell) or a script (PERMISSIVE mode
only, run as ``bash --noprofile --norc -c SCRIPT``).  Every task runs in its own session and
process group inside the workspace, with stdin on /dev/null and a scrubbed environment.

Environment under STRICT: deny by default.  A task gets only ``PATH`` (the agent's own
search path: absolute entries, none inside the workspace), ``HOME`` (the workspace),
``LANG=C.UTF-8`` and ``CORTEX_TASK_ID``, plus the variables of its env whose names the
policy allows (``allowed_env``); a task env with any other name is REJECTED.  Nothing of the
agent's own environment reaches it.

Environment under PERMISSIVE: a task never sees the agent's own environment.  It starts
from only these variables (``BASE_ENV_KEYS``), copied from the agent's environment when
they are set:

    PATH     where commands are looked up (``/usr/local/bin:/usr/bin:/bin`` when unset)
    LANG     locale, so tools print text and sort the way the operator expects
    LC_ALL   locale override, for the same reason
    TZ       timezone for timestamps the task prints
    TERM     terminal type, for tools that refuse to run or misformat without it

then HOME is set to the workspace, CORTEX_TASK_ID to the task id, and the task's own ``env``
is laid over the top.

STRICT mode looks commands up on the agent's PATH above (absolute entries outside the
workspace only), never on a PATH the task supplies: argv[0] must be a bare name in
``allowed_commands``, or the argv must start with one of ``allowed_prefixes`` (pins).

Limits: every task runs with no_new_privs and the policy's rlimits, and under bubblewrap
when the agent has it (see ``isolation``).  A task's processes die with its process group
when it times out, is cancelled, the runner shuts down, or its main process exits.  A
process that leaves the group on purpose (setsid, setpgid) escapes that; under bubblewrap
it dies with the task's pid namespace, and with a ``Containment`` (agent/reaper.py) it is
caught by the task's cgroup where one can be made, and the task dies with the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from cortexctl.agent.isolation import Isolation, TaskLimits, exec_problem, spawn_task
from cortexctl.agent.reaper import Containment

__all__ = [
    "BASE_ENV_KEYS",
    "DEFAULT_PATH",
    "OUTPUT_HARD_CAP",
    "PERMISSIVE",
    "STRICT",
    "Policy",
    "TaskOutcome",
    "TaskRejected",
    "TaskRunner",
    "TaskSpec",
    "build_env",
    "effective_timeout",
    "output_cap",
    "prepare_command",
]

STRICT = "strict"
PERMISSIVE = "permissive"

BASE_ENV_KEYS: tuple[str, ...] = ("PATH", "LANG", "LC_ALL", "TZ", "TERM")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

# Even "no cap" must not let one chatty task exhaust the agent's memory.
OUTPUT_HARD_CAP = 16 * 1024 * 1024

TERM_GRACE_S = 1.0
# Bounds the wait for pipes to close after the group is dead: only a process that escaped
# the group can still hold them open, and it must not hang the run forever.
_DRAIN_GRACE_S = 2.0
_CHUNK = 64 * 1024
STRICT_LANG = "C.UTF-8"
_SHUTDOWN_REASON = "the agent is shutting down"


@dataclass(frozen=True)
class Policy:
    """Sandbox policy the hub pushes to this node."""

    mode: str  # "strict" | "permissive"
    allowed_commands: tuple[str, ...]
    max_runtime_s: int  # 0 = no cap
    max_output_bytes: int  # per stream (stdout and stderr each); 0 = no cap
    revision: int = 0
    allowed_env: tuple[str, ...] = ()  # STRICT: env names a task may set
    allowed_prefixes: tuple[tuple[str, ...], ...] = ()  # STRICT: argv pins
    deny_network: bool = False
    limits: TaskLimits = field(default_factory=TaskLimits)


@dataclass(frozen=True)
class TaskSpec:
    """One task as assigned by the hub."""

    task_id: str
    argv: tuple[str, ...] = ()
    script: str = ""
    timeout_s: int = 0  # 0 = use the policy's max_runtime_s
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = ""  # relative to the workspace


@dataclass(frozen=True)
class TaskOutcome:
    """How a task ended."""

    state: str  # "succeeded" | "failed" | "timed_out" | "rejected" | "cancelled"
    exit_code: int  # process exit code; -signal for a signal; -1 when it never ran
    stdout: bytes
    stderr: bytes
    output_truncated: bool
    error: str  # human-readable diagnostic, "" on success


class TaskRejected(Exception):
    """The task breaks the policy; the message says what broke it and what would allow it."""


# --------------------------------------------------------------------------- policy checks


def effective_timeout(spec: TaskSpec, policy: Policy) -> int | None:
    """Return the smallest non-zero of the task's and the policy's runtime caps, or None."""
    caps = [t for t in (spec.timeout_s, policy.max_runtime_s) if t > 0]
    return min(caps) if caps else None


def output_cap(policy: Policy) -> int:
    """Return how many bytes of each output stream are kept."""
    if policy.max_output_bytes <= 0:
        return OUTPUT_HARD_CAP
    return min(policy.max_output_bytes, OUTPUT_HARD_CAP)


def _check_env_entry(key: str, value: str) -> None:
    if not key or "=" in key or "\0" in key:
        raise TaskRejected(
            f"environment variable name {key!r} is invalid (empty, or contains '=' or NUL);"
            " use a non-empty name without '=' or NUL"
        )
    if "\0" in value:
        raise TaskRejected(
            f"environment variable {key!r} has a NUL byte in its value, which cannot be"
            " passed to a process; remove it"
        )


def build_env(
    spec: TaskSpec,
    home: Path,
    *,
    strict: bool = False,
    allowed_env: tuple[str, ...] = (),
    search_path: str = "",
) -> dict[str, str]:
    """Return the scrubbed environment for the task; raise TaskRejected on a bad variable."""
    for key, value in spec.env.items():
        _check_env_entry(key, value)
    if strict:
        refused = sorted(key for key in spec.env if key not in allowed_env)
        if refused:
            raise TaskRejected(
                f"environment variable(s) {', '.join(refused)} are not in this node's"
                f" allowed_env ({', '.join(allowed_env) or 'none'}); drop them, or have the"
                " operator allow the names (`cortexctl nodes sandbox NODE --allow-env NAME`)"
            )
        env = {"PATH": search_path or DEFAULT_PATH, "HOME": str(home), "LANG": STRICT_LANG}
    else:
        env = {key: os.environ[key] for key in BASE_ENV_KEYS if key in os.environ}
        if not env.get("PATH"):
            env["PATH"] = DEFAULT_PATH
        env["HOME"] = str(home)
    env.update(spec.env)
    env["CORTEX_TASK_ID"] = spec.task_id
    return env


def prepare_command(
    policy: Policy, spec: TaskSpec, workspace: Path
) -> tuple[list[str], Path, dict[str, str]]:
    """Check the task against the policy and return (argv to exec, cwd, env); raise TaskRejected."""
    mode = _mode(policy)
    if bool(spec.argv) == bool(spec.script):
        raise TaskRejected("a task needs exactly one of argv or script")
    if mode == STRICT and spec.script:
        raise TaskRejected(
            "scripts need PERMISSIVE sandbox mode; this node is STRICT"
            " (send an argv of an allowed command instead)"
        )
    if not spec.task_id or "\0" in spec.task_id:
        raise TaskRejected("a task needs a non-empty task_id without NUL bytes")
    if spec.timeout_s < 0:
        raise TaskRejected(
            f"timeout_s is {spec.timeout_s}; use 0 for the policy's cap or a positive number"
            " of seconds"
        )
    for index, arg in enumerate(spec.argv):
        if "\0" in arg:
            raise TaskRejected(
                f"argv[{index}] contains a NUL byte, which cannot be passed to a process; remove it"
            )
    if "\0" in spec.script:
        raise TaskRejected(
            "the script contains a NUL byte, which cannot be passed to bash; remove it"
        )

    cwd = _resolve_cwd(spec.cwd, workspace)
    home = Path(os.path.realpath(workspace))
    # The agent's PATH, not the task's: the task must not pick where its binaries come from.
    base_path = os.environ.get("PATH") or DEFAULT_PATH
    strict_path = _strict_search_path(base_path, home)
    env = build_env(
        spec,
        home,
        strict=mode == STRICT,
        allowed_env=policy.allowed_env,
        search_path=strict_path,
    )

    if spec.script:
        bash = shutil.which("bash", path=_search_path(base_path, None))
        if bash is None:
            raise TaskRejected(
                f"scripts run with bash, which was not found on this node's PATH ({base_path});"
                " install bash on the node or send an argv instead"
            )
        return [bash, "--noprofile", "--norc", "-c", spec.script], cwd, env

    name = spec.argv[0]
    if mode == STRICT:
        exe = _resolve_strict(spec.argv, policy, strict_path)
    else:
        exe = _resolve_permissive(name, env["PATH"], cwd)
    return [exe, *spec.argv[1:]], cwd, env


def _mode(policy: Policy) -> str:
    mode = policy.mode.strip().lower()
    if mode not in (STRICT, PERMISSIVE):
        # Fail closed: an unknown mode must not quietly behave like PERMISSIVE.
        raise TaskRejected(
            f"this node's sandbox mode {policy.mode!r} is unknown; the policy must say"
            " 'strict' or 'permissive'"
        )
    return mode


def _resolve_cwd(spec_cwd: str, workspace: Path) -> Path:
    ws_real = os.path.realpath(workspace)
    if not os.path.isdir(ws_real):
        raise TaskRejected(
            f"the workspace {str(workspace)!r} does not exist on this node; the operator must"
            " create it before tasks can run"
        )
    if "\0" in spec_cwd:
        raise TaskRejected("the working directory contains a NUL byte; remove it")
    if os.path.isabs(spec_cwd):
        raise TaskRejected(
            f"working directory {spec_cwd!r} is absolute; give a path relative to the workspace"
        )
    if ".." in Path(spec_cwd).parts:
        raise TaskRejected(
            f"working directory {spec_cwd!r} contains '..'; give a path inside the workspace"
            " without '..'"
        )
    target = os.path.realpath(os.path.join(ws_real, spec_cwd))
    if os.path.commonpath([ws_real, target]) != ws_real:
        raise TaskRejected(
            f"working directory {spec_cwd!r} leads outside the workspace (through a symlink,"
            f" to {target}); give a directory that really is inside the workspace"
        )
    if not os.path.exists(target):
        raise TaskRejected(
            f"working directory {spec_cwd!r} does not exist in the workspace; create it first"
            " or leave cwd empty"
        )
    if not os.path.isdir(target):
        raise TaskRejected(
            f"working directory {spec_cwd!r} is not a directory; give a directory in the"
            " workspace or leave cwd empty"
        )
    return Path(target)


def _search_path(path: str, cwd: Path | None) -> str:
    # Relative PATH entries would be looked up from the agent's own cwd, not the task's; for
    # STRICT (cwd None) they are dropped so a workspace file can never shadow a real command.
    entries: list[str] = []
    for entry in path.split(os.pathsep):
        if os.path.isabs(entry):
            entries.append(entry)
        elif cwd is not None:
            entries.append(os.path.join(cwd, entry))
    return os.pathsep.join(entries)


def _strict_search_path(path: str, workspace: Path) -> str:
    # Absolute entries only, and none inside the workspace, where a task could plant a
    # program named like an allowed command.
    ws = os.path.realpath(workspace)
    entries = []
    for entry in path.split(os.pathsep):
        if not os.path.isabs(entry):
            continue
        real = os.path.realpath(entry)
        if os.path.commonpath([ws, real]) == ws:
            continue
        entries.append(entry)
    return os.pathsep.join(entries) or DEFAULT_PATH


def _allowed_by_policy(argv: tuple[str, ...], policy: Policy) -> bool:
    if argv[0] in policy.allowed_commands:
        return True
    return any(argv[: len(pin)] == tuple(pin) for pin in policy.allowed_prefixes if pin)


def _resolve_strict(argv: tuple[str, ...], policy: Policy, search_path: str) -> str:
    name = argv[0]
    if not name or "/" in name or name in (".", ".."):
        raise TaskRejected(
            f"STRICT mode runs allowed commands by bare name only; {name!r} is not a bare"
            " command name - send just the name (for example 'echo') of a command in"
            " allowed_commands, or switch the node to PERMISSIVE sandbox mode"
        )
    if not _allowed_by_policy(argv, policy):
        pins = [" ".join(p) for p in policy.allowed_prefixes if p and p[0] == name]
        if pins:
            raise TaskRejected(
                f"argv of {name!r} does not start with an allowed prefix"
                f" ({', '.join(repr(p) for p in pins)}); send an argv that starts with one,"
                " or have the operator pin another (`--allow 'CMD ARGS'`)"
            )
        allowed = ", ".join(repr(c) for c in policy.allowed_commands) or "none"
        raise TaskRejected(
            f"command {name!r} is not in this node's allowed_commands ({allowed}); add it to"
            " the policy's allowed_commands, or switch the node to PERMISSIVE sandbox mode"
        )
    exe = shutil.which(name, path=search_path)
    if exe is None:
        raise TaskRejected(
            f"allowed command {name!r} was not found on this node's PATH ({search_path});"
            " install it on the node or add its directory to the agent's PATH"
        )
    return os.path.abspath(exe)


def _resolve_permissive(name: str, task_path: str, cwd: Path) -> str:
    if not name:
        raise TaskRejected("argv[0] is empty; give the command to run")
    if "/" in name:
        # Only existence is checked: a file that exists but cannot be executed is a spawn
        # failure ("failed", with the OS's reason), not a policy rejection.
        candidate = name if os.path.isabs(name) else os.path.join(cwd, name)
        if not os.path.lexists(candidate):
            raise TaskRejected(
                f"command {name!r} does not exist (looked for {candidate}); give an existing"
                " path or a command name on PATH"
            )
        return os.path.abspath(candidate)
    exe = shutil.which(name, path=_search_path(task_path, cwd))
    if exe is None:
        raise TaskRejected(
            f"command {name!r} was not found on the task's PATH ({task_path}); install it,"
            " give its full path, or set PATH in the task env"
        )
    return os.path.abspath(exe)


# --------------------------------------------------------------------------- execution


def _never_ran(state: str, error: str) -> TaskOutcome:
    return TaskOutcome(state, -1, b"", b"", False, error)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    # pgid <= 1 would hit init or (with 0) our own group; never signal either.
    if pgid <= 1:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _exit_outcome(returncode: int) -> tuple[str, str]:
    if returncode == 0:
        return "succeeded", ""
    if returncode > 0:
        return "failed", f"exited with code {returncode}"
    return "failed", f"killed by {_signal_name(-returncode)}"


OnOutput = Callable[[int, int, bytes], object]
"""Called with (stream: 1 stdout, 2 stderr; offset; bytes) for each piece of output kept."""


class _Capture:
    """Reads one pipe without blocking, keeping the first ``cap`` bytes and discarding the
    rest; each piece kept also goes to ``on_output`` (live output) when given."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        cap: int,
        on_output: Callable[[int, bytes], object] | None = None,
    ) -> None:
        self._loop = loop
        self._fd = fd
        self._cap = cap
        self._on_output = on_output
        self._closed = False
        self.data = bytearray()
        self.truncated = False
        self.done: asyncio.Future[None] = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self._fd, _CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()
            return
        room = self._cap - len(self.data)
        if room > 0:
            kept = chunk[:room]
            if self._on_output is not None:
                self._on_output(len(self.data), kept)
            self.data += kept
        if len(chunk) > room:
            self.truncated = True

    def close(self) -> None:
        """Stop reading and close the pipe."""
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
        if not self.done.done():
            self.done.set_result(None)


@dataclass(eq=False)
class _Job:
    task_id: str
    stop: asyncio.Future[None]
    done: asyncio.Event
    cancel_reason: str | None = None
    # Set once the outcome is decided (exit seen or timeout hit); cancel() is too late then.
    settled: bool = False

    def request_stop(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        if not self.stop.done():
            self.stop.set_result(None)


class TaskRunner:
    """Runs tasks in the workspace under a policy; cancel() and shutdown() belong to its loop."""

    def __init__(
        self,
        workspace: Path,
        *,
        term_grace_s: float = TERM_GRACE_S,
        containment: Containment | None = None,
        isolation: Isolation | None = None,
    ) -> None:
        self._workspace = Path(workspace)
        self._isolation = isolation or Isolation()
        self._term_grace_s = term_grace_s
        self._containment = containment  # no orphans: see agent/reaper.py
        self._jobs: dict[str, _Job] = {}
        self._closing = False

    @property
    def workspace(self) -> Path:
        """The directory tasks run in."""
        return self._workspace

    @property
    def running(self) -> int:
        """Number of tasks currently running."""
        return len(self._jobs)

    @property
    def running_ids(self) -> list[str]:
        """Ids of the tasks currently running."""
        return list(self._jobs)

    def cancel(self, task_id: str, reason: str) -> bool:
        """Kill the task's process group; True if it was running (run() then says cancelled)."""
        job = self._jobs.get(task_id)
        if job is None or (job.settled and job.cancel_reason is None):
            return False
        job.request_stop(reason or "cancelled")
        return True

    def cancel_all(self, reason: str) -> int:
        """Cancel every running task (the stream that assigned them is gone); return how many."""
        return sum(self.cancel(task_id, reason) for task_id in list(self._jobs))

    async def shutdown(self) -> None:
        """Kill every running process group and wait for the run() calls to finish."""
        self._closing = True
        jobs = list(self._jobs.values())
        for job in jobs:
            if not job.settled:
                job.request_stop(_SHUTDOWN_REASON)
        for job in jobs:
            await job.done.wait()

    async def run(
        self, spec: TaskSpec, policy: Policy, on_output: OnOutput | None = None
    ) -> TaskOutcome:
        """Run one task to completion; never raises for task problems. ``on_output`` gets
        the output as it comes (within the output cap), before the outcome has all of it."""
        if self._closing:
            return _never_ran("cancelled", _SHUTDOWN_REASON)
        if spec.task_id in self._jobs:
            return _never_ran(
                "rejected",
                f"task {spec.task_id!r} is already running on this node; wait for it to finish"
                " or cancel it first",
            )
        try:
            argv, cwd, env = prepare_command(policy, spec, self._workspace)
            if policy.deny_network and not self._isolation.network_control:
                raise TaskRejected(
                    "the policy denies tasks the network, which this agent can enforce only"
                    " with bubblewrap (`cortexctl agent --isolation bwrap`)"
                )
        except TaskRejected as exc:
            return _never_ran("rejected", str(exc))
        argv = self._isolation.command(
            argv, workspace=self._workspace, cwd=cwd, deny_network=policy.deny_network
        )

        loop = asyncio.get_running_loop()
        job = _Job(spec.task_id, loop.create_future(), asyncio.Event())
        self._jobs[spec.task_id] = job
        try:
            return await self._execute(
                job,
                argv,
                cwd,
                env,
                effective_timeout(spec, policy),
                output_cap(policy),
                policy.limits,
                on_output,
            )
        finally:
            del self._jobs[spec.task_id]
            job.done.set()

    async def _execute(
        self,
        job: _Job,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        timeout: int | None,
        cap: int,
        limits: TaskLimits,
        on_output: OnOutput | None = None,
    ) -> TaskOutcome:
        loop = asyncio.get_running_loop()
        try:
            out_r, out_w = os.pipe()
            try:
                err_r, err_w = os.pipe()
            except OSError:
                _close_all((out_r, out_w))
                raise
        except OSError as exc:
            return _never_ran("failed", f"could not create output pipes: {_os_reason(exc)}")

        problem = exec_problem(argv[0])
        if problem is not None:
            _close_all((out_r, out_w, err_r, err_w))
            return _never_ran("failed", f"could not start {argv[0]}: {_os_reason(problem)}")
        contained = self._containment.prepare(job.task_id) if self._containment else None
        launch = contained.wrap(argv) if contained else argv
        try:
            proc = await spawn_task(
                launch, cwd=cwd, env=env, stdout=out_w, stderr=err_w, limits=limits
            )
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            _close_all((out_r, err_r))
            if contained:
                contained.finished()
            return _never_ran("failed", f"could not start {argv[0]}: {_os_reason(exc)}")
        except BaseException:
            _close_all((out_r, err_r))
            if contained:
                contained.finished()
            raise
        finally:
            # The child has its own copies; ours would keep the pipes from ever reaching EOF.
            _close_all((out_w, err_w))
        if contained:
            contained.started(proc.pid)

        out = _Capture(loop, out_r, cap, None if on_output is None else partial(on_output, 1))
        err = _Capture(loop, err_r, cap, None if on_output is None else partial(on_output, 2))
        try:
            state, error = await self._supervise(job, proc, timeout)
            if contained:
                contained.finished()  # a process that left the group dies here too
            await asyncio.wait([out.done, err.done], timeout=_DRAIN_GRACE_S)
        finally:
            out.close()
            err.close()
            if contained:
                contained.finished()
        returncode = proc.returncode if proc.returncode is not None else -1
        return TaskOutcome(
            state=state,
            exit_code=returncode,
            stdout=bytes(out.data),
            stderr=bytes(err.data),
            output_truncated=out.truncated or err.truncated,
            error=error,
        )

    async def _supervise(
        self, job: _Job, proc: asyncio.subprocess.Process, timeout: int | None
    ) -> tuple[str, str]:
        pgid = proc.pid  # start_new_session makes the child its group's leader
        waiter = asyncio.ensure_future(proc.wait())
        try:
            either: list[asyncio.Future[Any]] = [waiter, job.stop]
            await asyncio.wait(either, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            job.settled = True
            # A cancel that raced with a natural exit still wins: cancel() already said True.
            if job.cancel_reason is not None:
                await self._terminate(pgid, waiter)
                return "cancelled", job.cancel_reason
            if waiter.done():
                return _exit_outcome(waiter.result())
            await self._terminate(pgid, waiter)
            return "timed_out", f"timed out after {timeout}s"
        finally:
            if not waiter.done():
                # Our caller was cancelled: leave no process or unreaped child behind.
                _killpg(pgid, signal.SIGKILL)
                await asyncio.shield(waiter)
            # Sweep whatever the main process left running in its group (background jobs).
            _killpg(pgid, signal.SIGKILL)

    async def _terminate(self, pgid: int, waiter: asyncio.Future[int]) -> None:
        if not waiter.done():
            _killpg(pgid, signal.SIGTERM)
            await asyncio.wait([waiter], timeout=self._term_grace_s)
        _killpg(pgid, signal.SIGKILL)
        await asyncio.shield(waiter)


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
