"""No orphans: every process of a task dies with the agent, or at the latest before a
restarted agent reports in.

Three mechanisms, the strongest one available first (Linux only; elsewhere none applies):

1. **bubblewrap** ``--unshare-pid --die-with-parent``, where the sandbox uses it (see the
   executor): the task's pid namespace dies with the agent. Nothing escapes it.
2. **A cgroup v2 group per task**, when the agent may make one (root, or a delegated
   cgroup): the task's leader is moved into ``cortex-<task>`` under the agent's own cgroup
   before it execs, so every descendant is in it too — ``setsid``, ``setpgid`` and double
   forks included. When the task ends the group is killed (``cgroup.kill``) and removed; a
   restarted agent kills the groups its previous run left. Escapes: nothing a task can do
   as an unprivileged process; a task running as root could move itself to another cgroup.
3. **Otherwise** ``PR_SET_PDEATHSIG(SIGKILL)`` on the task's leader (set by ``setpriv
   --pdeathsig KILL`` in front of the task's argv: it dies the moment the agent does) plus
   the task's own process group (session): the
   agent kills the group when the task ends, and a restarted agent kills what is left of
   the group of its previous run. Escapes: a descendant that calls ``setsid`` or
   ``setpgid`` leaves the group and survives a kill -9 of the agent (it is reparented to
   init and no record names it); ``PR_SET_PDEATHSIG`` is not inherited and is cleared by
   executing a set-user-ID program; without ``setpriv`` (util-linux) on the agent's PATH
   only the process group is left. In all cases a process started in the instant between
   the spawn and the record being written is not in any record.

Each running task has a record in ``<state dir>/tasks/<task id>.json``: the leader's pid,
its start time (``/proc/<pid>/stat`` field 22, clock ticks since boot), the boot id and the
cgroup. A restarted agent only ever kills a process whose start time shows it was started
after that leader on the same boot, so a reused pid is never killed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("cortexctl.agent")

RECORDS = "tasks"
MODE_ENV = "CORTEX_AGENT_CONTAINMENT"  # auto (default: cgroup when possible) | pgroup
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    pid: int
    start_ticks: int
    boot_id: str
    cgroup: str = ""  # absolute path of the task's cgroup directory, "" when none


@dataclass(frozen=True)
class Leftover:
    task_id: str
    killed: int  # processes of the task that were still alive and were killed


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def proc_stat(pid: int) -> tuple[int, int] | None:
    """(process group, start time in clock ticks) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return int(fields[2]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _all_pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def own_cgroup_dir() -> Path | None:
    """The cgroup v2 directory this process is in, if the unified hierarchy is mounted."""
    mount = None
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            if right.split(" ", 1)[0] == "cgroup2":
                mount = left.split()[4]
                break
        if mount is None:
            return None
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return Path(mount) / line[3:].lstrip("/")
    except OSError:
        return None
    return None


def _kill_cgroup(path: Path) -> int:
    """Kill every process in a cgroup; return how many there were."""
    try:
        pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return 0
    if not pids:
        return 0
    try:
        (path / "cgroup.kill").write_text("1")
    except OSError:  # before Linux 5.14: one by one (all are in the group: no pid reuse)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return len(pids)


def _remove_cgroup(path: Path, wait_s: float = 2.0) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            _kill_cgroup(path)
            time.sleep(0.02)


def _kill_group(record: TaskRecord) -> int:
    """Kill what is left of the task's process group, never a process that is not ours."""
    leader = proc_stat(record.pid)
    if leader is not None and leader[1] != record.start_ticks:
        # The leader's pid is in use by another process: a pid is never reused while a
        # process group of that number exists, so the task's group is gone.
        return 0
    killed = 0
    for pid in _all_pids():
        stat = proc_stat(pid)
        if stat is None or stat[0] != record.pid or stat[1] < record.start_ticks:
            continue
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def _launcher_tools() -> tuple[str | None, str | None]:
    """(sh, setpriv) as absolute paths on the agent's PATH, or None where missing."""
    path = os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
    return shutil.which("sh", path=path), shutil.which("setpriv", path=path)


# The leader writes its own pid into its cgroup before it execs the task, so nothing the
# task starts is ever outside it. ("$0" is the cgroup.procs file; the task's argv follows.)
_ENTER_CGROUP = 'echo $$ > "$0" && exec "$@"'


class TaskContainment:
    """One task's containment: made before the spawn, applied in the child, undone at the end.

    It works through the task's argv (a launcher in front of it), never a ``preexec_fn``:
    Python code between fork and exec is unsafe in a process that runs gRPC threads.
    """

    def __init__(self, owner: Containment, task_id: str, cgroup: Path | None) -> None:
        self.owner = owner
        self.task_id = task_id
        self.cgroup = cgroup
        self.record: TaskRecord | None = None

    def wrap(self, argv: list[str]) -> list[str]:
        """The argv to exec: launchers that contain the task, then the task's own argv."""
        sh, setpriv = self.owner.tools
        launch = list(argv)
        if setpriv is not None:
            # The leader dies the moment the agent does (not inherited by its children).
            launch = [setpriv, "--pdeathsig", "KILL", "--", *launch]
        if self.cgroup is not None and sh is not None:
            launch = [sh, "-c", _ENTER_CGROUP, str(self.cgroup / "cgroup.procs"), *launch]
        return launch

    def started(self, pid: int) -> None:
        stat = proc_stat(pid)
        self.record = TaskRecord(
            task_id=self.task_id,
            pid=pid,
            start_ticks=stat[1] if stat else 0,
            boot_id=boot_id(),
            cgroup=str(self.cgroup or ""),
        )
        self.owner.save(self.record)

    def finished(self) -> None:
        """Kill whatever the task left running (its cgroup) and drop its record."""
        if self.cgroup is not None:
            _kill_cgroup(self.cgroup)
            if not _remove_cgroup(self.cgroup):
                log.warning("could not remove the cgroup %s of task %s", self.cgroup, self.task_id)
                return  # the record stays, so the next start tries again
        self.owner.forget(self.task_id)


class Containment:
    """Keeps every task's processes from outliving the agent (see the module docstring)."""

    def __init__(self, state_dir: Path, mode: str | None = None) -> None:
        self.records = state_dir / RECORDS
        self.mode = (mode or os.environ.get(MODE_ENV, "auto")).lower()
        self.linux = sys.platform.startswith("linux")
        self.tools = _launcher_tools() if self.linux else (None, None)
        usable = self.linux and self.mode != "pgroup" and self.tools[0] is not None
        self._cgroup_base = own_cgroup_dir() if usable else None
        self._cgroup_warned = False

    @property
    def uses_cgroups(self) -> bool:
        return self._cgroup_base is not None

    def prepare(self, task_id: str) -> TaskContainment:
        return TaskContainment(self, task_id, self._make_cgroup(task_id))

    def _make_cgroup(self, task_id: str) -> Path | None:
        if self._cgroup_base is None:
            return None
        path = self._cgroup_base / f"cortex-{_SAFE.sub('_', task_id)}"
        try:
            path.mkdir(exist_ok=True)
            return path
        except OSError as err:
            if not self._cgroup_warned:
                self._cgroup_warned = True
                log.warning(
                    "cannot make a cgroup under %s (%s); tasks are contained by their "
                    "process group and a parent-death signal instead",
                    self._cgroup_base,
                    err.strerror,
                )
            self._cgroup_base = None
            return None

    def save(self, record: TaskRecord) -> None:
        try:
            self.records.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = self.records / f"{_SAFE.sub('_', record.task_id)}.json"
            tmp = path.with_name(f".{path.name}.tmp")
            # No fsync: the record is for a restart of the agent, whose processes a crash of
            # the machine takes with it (and the boot id tells such a record apart); the page
            # cache holds it across the agent's death. Its spawn does not wait for a disk.
            with open(tmp, "w") as handle:
                json.dump(asdict(record), handle)
            os.replace(tmp, path)
        except OSError as err:
            log.warning("could not record task %s's process: %s", record.task_id, err)

    def forget(self, task_id: str) -> None:
        with contextlib.suppress(OSError):
            (self.records / f"{_SAFE.sub('_', task_id)}.json").unlink()

    def reap_leftovers(self) -> list[Leftover]:
        """Kill the processes of the tasks the previous run of this agent left running."""
        try:
            paths = sorted(self.records.glob("*.json"))
        except OSError:
            return []
        this_boot = boot_id()
        found = []
        for path in paths:
            try:
                record = TaskRecord(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                path.unlink(missing_ok=True)
                continue
            killed = 0
            if record.boot_id == this_boot:
                if record.cgroup:
                    killed = _kill_cgroup(Path(record.cgroup))
                    _remove_cgroup(Path(record.cgroup))
                else:
                    killed = _kill_group(record)
            elif record.cgroup:
                _remove_cgroup(Path(record.cgroup), wait_s=0)
            found.append(Leftover(record.task_id, killed))
            path.unlink(missing_ok=True)
            if killed:
                log.warning(
                    "killed %d leftover process(es) of task %s from this agent's previous run",
                    killed,
                    record.task_id,
                )
        return found
