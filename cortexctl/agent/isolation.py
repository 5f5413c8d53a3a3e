"""OS containment of a task process on Linux: no_new_privs, rlimits, bubblewrap.

Every task, in both sandbox modes, starts in its own session and process group with
``PR_SET_NO_NEW_PRIVS`` set (a setuid program cannot gain privileges) and the policy's
rlimits. With bubblewrap (``agent --isolation bwrap``, or ``auto`` when it is present and
works) the task also runs in private namespaces:

    /               the host's filesystem, read-only
    <workspace>     bound read-write at its own path
    <state dir>     an empty tmpfs: the agent's credential is invisible
    /tmp /var/tmp   private tmpfs
    /dev /proc      minimal: bwrap's own /dev, a /proc of the task's pid namespace
    pid, ipc        unshared (--unshare-pid); the task dies with the agent (--die-with-parent)
    network         unshared (--unshare-net, only a loopback of its own) when the policy says so
    session         a new one (--new-session): no TIOCSTI into the agent's terminal
    capabilities    all dropped (--cap-drop ALL), also when the agent runs as root
    environment     the task's own; bubblewrap (and a sh launcher) add PWD, the working dir

``spawn_task`` is the one place a task process is created. The chain it execs: ``LAUNCHER``
(no_new_privs, rlimits), then agent/reaper.py's launchers (the task's cgroup, a parent-death
signal), then bubblewrap, then the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cortexctl.core import features

log = logging.getLogger("cortexctl.agent")

AUTO = "auto"
BWRAP = "bwrap"
NONE = "none"
CHOICES = (AUTO, BWRAP, NONE)

_PROBE_TIMEOUT_S = 20.0


class IsolationUnavailable(Exception):
    """The isolation asked for cannot be had here; the message says why and what to do."""


@dataclass(frozen=True)
class TaskLimits:
    """setrlimit(2) values for a task; 0 leaves the agent's own limit."""

    cpu_seconds: int = 0
    address_space_bytes: int = 0
    processes: int = 0
    file_size_bytes: int = 0
    open_files: int = 0

    def rlimits(self) -> list[tuple[int, int]]:
        pairs = [
            (resource.RLIMIT_CPU, self.cpu_seconds),
            (resource.RLIMIT_AS, self.address_space_bytes),
            (resource.RLIMIT_FSIZE, self.file_size_bytes),
            (resource.RLIMIT_NOFILE, self.open_files),
        ]
        nproc = getattr(resource, "RLIMIT_NPROC", None)
        if nproc is not None:
            pairs.append((nproc, self.processes))
        return [(which, value) for which, value in pairs if value > 0]


def root_process_limit_warning(limits: TaskLimits, euid: int) -> str | None:
    """Why the process limit will not hold, for an agent running as root, or None."""
    if euid != 0 or limits.processes <= 0:
        return None
    return (
        f"this agent runs as root, and the kernel does not apply RLIMIT_NPROC to root: the "
        f"process limit of the policy ({limits.processes}) does not bind its tasks; run the "
        "agent as an ordinary user"
    )


# Between fork and exec the agent runs no Python: with gRPC's threads about, Python code in
# a forked child (preexec_fn) can crash or deadlock. So a task starts through this launcher,
# a fresh interpreter (-I -S: no site, no PYTHON* variables) that sets no_new_privs and the
# rlimits on itself, then execs the task. It reports an exec failure on the fd given first
# (close-on-exec, so a successful exec just closes it). Options: "nnp", "RLIMIT_X=N".
LAUNCHER = """
import os, sys
fd = int(sys.argv[1])
args = sys.argv[2:]
cut = args.index("--")
options, argv = args[:cut], args[cut + 1:]
try:
    for option in options:
        if option == "nnp":
            if sys.platform.startswith("linux"):
                import ctypes
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.prctl(38, 1, 0, 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        else:
            import resource
            name, value = option.split("=", 1)
            which = getattr(resource, name)
            limit = int(value)
            hard = resource.getrlimit(which)[1]
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            resource.setrlimit(which, (limit, limit))
    import signal
    for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ"):  # Python ignores these; a task must not
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    os.set_inheritable(fd, False)
    os.execv(argv[0], argv)
except OSError as err:
    os.write(fd, ("%d:%s" % (err.errno or 0, err.strerror or err)).encode())
    os._exit(127)
"""


_RLIMIT_NAMES = {
    getattr(resource, name): name
    for name in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_NPROC")
    if hasattr(resource, name)
}


def launcher_options(limits: TaskLimits) -> list[str]:
    return ["nnp", *(f"{_RLIMIT_NAMES[which]}={value}" for which, value in limits.rlimits())]


# The same launch without an interpreter: util-linux's setpriv (no_new_privs) and prlimit
# (the rlimits), two small C programs, cost about a millisecond where Python's start costs
# tens. The task runs as the direct child's exec chain, so Popen itself reports a failure to
# exec the first program; a failure further down is the task's exit code and stderr, as for
# every wrapped launch.
_PRLIMIT_OPTIONS = {
    "RLIMIT_CPU": "--cpu",
    "RLIMIT_AS": "--as",
    "RLIMIT_FSIZE": "--fsize",
    "RLIMIT_NOFILE": "--nofile",
    "RLIMIT_NPROC": "--nproc",
}


@functools.cache
def native_launchers() -> tuple[str, str] | None:
    """(setpriv, prlimit) as absolute paths, or None when either is missing (not Linux, or
    no util-linux): then the Python LAUNCHER does their work."""
    if not sys.platform.startswith("linux"):
        return None
    path = os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
    setpriv, prlimit = shutil.which("setpriv", path=path), shutil.which("prlimit", path=path)
    return (setpriv, prlimit) if setpriv and prlimit else None


def exec_problem(path: str) -> OSError | None:
    """Why the kernel would refuse to exec ``path`` (None when it would not), asked before
    the spawn: behind launchers a refused exec is only their exit code (126, 127), and a
    file of no known format would be run by the shell (execvp's fallback)."""
    try:
        st = os.stat(path)
    except OSError as err:
        return err
    if stat.S_ISDIR(st.st_mode) or not os.access(path, os.X_OK):
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
    if _other_binary_formats():
        return None  # binfmt_misc may run it: let the kernel decide
    try:
        with open(path, "rb") as program:
            head = program.read(4)
    except OSError:
        return None  # execute-only: the kernel can still run it
    if head.startswith(b"#!") or head == b"\x7fELF":
        return None
    return OSError(errno.ENOEXEC, os.strerror(errno.ENOEXEC), path)


@functools.cache
def _other_binary_formats() -> bool:
    try:
        entries = set(os.listdir("/proc/sys/fs/binfmt_misc"))
    except OSError:
        return False
    return bool(entries - {"register", "status"})


def native_argv(tools: tuple[str, str], limits: TaskLimits, argv: Sequence[str]) -> list[str]:
    setpriv, prlimit = tools
    options = []
    for which, value in limits.rlimits():
        hard = resource.getrlimit(which)[1]  # a child can lower its limits, never raise them
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        options.append(f"{_PRLIMIT_OPTIONS[_RLIMIT_NAMES[which]]}={value}:{value}")
    launch = [setpriv, "--no-new-privs", "--", *argv]
    return [prlimit, *options, "--", *launch] if options else launch


def launcher_argv(error_fd: int, limits: TaskLimits, argv: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-I",
        "-S",
        "-c",
        LAUNCHER,
        str(error_fd),
        *launcher_options(limits),
        "--",
        *argv,
    ]


@dataclass(frozen=True)
class Isolation:
    """How tasks of this agent are contained; ``level`` is reported to the hub."""

    level: str = NONE  # "bwrap" | "none"
    bwrap: str = ""  # path of the bwrap binary when level is bwrap
    hidden: tuple[Path, ...] = ()  # directories a task must not see (the state dir)

    @property
    def network_control(self) -> bool:
        return self.level == BWRAP

    def capabilities(self) -> list[str]:
        """Policy features this agent enforces, for the handshake."""
        names = [features.POLICY_ENV, features.POLICY_ARGV_PINS, features.POLICY_RLIMITS]
        if self.network_control:
            names.append(features.POLICY_NETWORK)
        names.append(features.ISOLATION_PREFIX + self.level)
        return names

    def command(
        self, argv: Sequence[str], *, workspace: Path, cwd: Path, deny_network: bool
    ) -> list[str]:
        """The argv to exec: the task's own, or bubblewrap around it."""
        if self.level != BWRAP:
            return list(argv)
        return [
            self.bwrap,
            *bwrap_args(workspace, self.hidden, deny_network),
            "--chdir",
            str(cwd),
            "--",
            *argv,
        ]


def bwrap_args(workspace: Path, hidden: Sequence[Path], deny_network: bool) -> list[str]:
    ws = os.path.realpath(workspace)
    args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    if os.path.isdir("/var/tmp"):
        args += ["--tmpfs", "/var/tmp"]
    args += ["--bind", ws, ws]
    # After the workspace bind, so a state dir inside the workspace is hidden too.
    for path in hidden:
        real = os.path.realpath(path)
        if os.path.isdir(real):
            args += ["--tmpfs", real]
    args += [
        "--unshare-pid",
        "--unshare-ipc",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]
    if deny_network:
        args.append("--unshare-net")
    return args


def probe_bwrap(path: str, workspace: Path) -> str | None:
    """Why bubblewrap cannot run tasks here (None when it works), tried for real."""
    argv = [path, *bwrap_args(workspace, (), True), "--chdir", str(workspace), "--", "true"]
    read_fd, write_fd = os.pipe()
    try:
        done = subprocess.run(
            launcher_argv(write_fd, TaskLimits(), argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_PROBE_TIMEOUT_S,
            pass_fds=(write_fd,),
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as err:
        return str(err)
    finally:
        os.close(write_fd)
        os.close(read_fd)
    if done.returncode != 0:
        return done.stderr.decode(errors="replace").strip() or f"exit code {done.returncode}"
    return None


def choose_isolation(choice: str, workspace: Path, hidden: Sequence[Path]) -> Isolation:
    """The isolation for ``--isolation CHOICE``; raise IsolationUnavailable for bwrap."""
    if choice not in CHOICES:
        raise IsolationUnavailable(f"bad --isolation {choice!r}: expected auto, bwrap or none")
    if choice == NONE:
        log.warning(
            "--isolation none: tasks run without bubblewrap and can read and write whatever "
            "this agent's user can, including the agent's credential in %s",
            ", ".join(map(str, hidden)) or "its state dir",
        )
        return Isolation(NONE)
    path = shutil.which("bwrap")
    reason = "bwrap (bubblewrap) is not installed" if path is None else None
    if path is not None:
        reason = probe_bwrap(path, workspace)
        if reason:
            reason = f"bwrap at {path} does not work here: {reason}"
    if reason is None and path is not None:
        return Isolation(BWRAP, path, tuple(Path(p) for p in hidden))
    if choice == BWRAP:
        raise IsolationUnavailable(
            f"--isolation bwrap: {reason}; install bubblewrap (Debian: apt install "
            "bubblewrap) or run with --isolation none"
        )
    log.warning(
        "no bubblewrap isolation (%s): tasks can then read and write whatever this agent's "
        "user can, including the agent's credential; install bubblewrap (Debian: apt install "
        "bubblewrap) so tasks run with the filesystem read-only and the state dir hidden",
        reason,
    )
    return Isolation(NONE)


def _read_to_eof(fd: int) -> bytes:
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    return data


async def spawn_task(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    stdout: int,
    stderr: int,
    limits: TaskLimits,
) -> asyncio.subprocess.Process:
    """Start one task process: its own session, stdin on /dev/null, no_new_privs, rlimits.

    Raises OSError (with the OS's reason) when the task's program could not be executed.
    """
    tools = native_launchers()
    if tools is not None:
        return await _spawn(
            native_argv(tools, limits, argv), cwd=cwd, env=env, stdout=stdout, stderr=stderr
        )
    read_fd, write_fd = os.pipe()
    try:
        try:
            proc = await _spawn(
                launcher_argv(write_fd, limits, argv),
                cwd=cwd,
                env=env,
                stdout=stdout,
                stderr=stderr,
                pass_fds=(write_fd,),
            )
        finally:
            os.close(write_fd)
        reading = asyncio.get_running_loop().run_in_executor(None, _read_to_eof, read_fd)
        try:
            failure = await asyncio.shield(reading)
        except BaseException:
            # Cancelled while the task was starting (it may run already): its caller
            # never gets the process, so nothing would ever stop it. Stop it here, and
            # let the reader see the pipe's end before its descriptor is closed.
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
            with contextlib.suppress(BaseException):
                await asyncio.shield(reading)
            raise
    finally:
        os.close(read_fd)
    if failure:
        await proc.wait()
        code, _, reason = failure.decode(errors="replace").partition(":")
        raise OSError(int(code) if code.isdigit() else 0, reason)
    return proc


async def _spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    stdout: int,
    stderr: int,
    pass_fds: Sequence[int] = (),
) -> asyncio.subprocess.Process:
    """Start ``argv`` in its own session, stdin on /dev/null. (A cancel while it starts:
    asyncio kills the process it made, and nothing but its first exec has run.)"""
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        env=env,
        start_new_session=True,
        pass_fds=pass_fds,
    )
