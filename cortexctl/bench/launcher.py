"""Start a real `cortexctl serve` as a child process and know when it serves.

The one way a hub process is launched outside `serve` itself: `cortexctl bench`,
benchmarks/bench_sync.py and tests/helpers.py all start hubs through ``start_hub``. The hub
writes its ready file (address and hub id) once it listens, so nobody guesses a port or
sleeps for a start-up.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cortexctl.core.clock import Deadline

START_TIMEOUT_S = 60.0
CORTEXCTL = (sys.executable, "-m", "cortexctl")


@dataclass
class HubProcess:
    """One running `cortexctl serve` child and its log file."""

    popen: subprocess.Popen[bytes]
    address: str
    hub_id: str
    log_path: Path
    args: list[str]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (a graceful shutdown) and wait; kill and raise if it does not stop."""
        if not self.alive():
            return self.popen.returncode
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"the hub did not stop on SIGTERM:\n{self.log()}") from None

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
            self.popen.wait()


def start_hub(
    workdir: Path,
    env: dict[str, str],
    *serve_args: str,
    listen: str = "127.0.0.1:0",
    ready_name: str = "ready.json",
    log_name: str = "hub.log",
    timeout_s: float = START_TIMEOUT_S,
    prefix: Sequence[str] = (),
) -> HubProcess:
    """Start `cortexctl serve --listen LISTEN SERVE_ARGS...` and return it once it serves.

    Its output goes to ``workdir/log_name`` (appended, so restarts share one log). A hub
    that exits or does not serve within ``timeout_s`` raises RuntimeError with its log.
    ``prefix`` runs it under another command, e.g. ``("prlimit", "--nofile=1024", "--")``.
    """
    ready = workdir / ready_name
    args = [*prefix, *CORTEXCTL, "serve", "--listen", listen, "--ready-file", str(ready)]
    args += serve_args
    return start_process(
        args,
        workdir,
        env,
        ready_name=ready_name,
        log_name=log_name,
        timeout_s=timeout_s,
        what="hub",
    )


def start_process(
    args: list[str],
    workdir: Path,
    env: dict[str, str],
    *,
    ready_name: str = "ready.json",
    log_name: str = "hub.log",
    timeout_s: float = START_TIMEOUT_S,
    what: str = "hub",
) -> HubProcess:
    """Start ``args`` (which must write ``workdir/ready_name`` once it serves) and wait.

    `cortexctl serve` and the bench's bare server (cortexctl.bench.bare) both announce
    themselves that way.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / ready_name
    ready.unlink(missing_ok=True)
    log_path = workdir / log_name
    with log_path.open("ab") as log:
        popen = subprocess.Popen(args, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = Deadline.after(timeout_s)
    while not ready.exists():
        if popen.poll() is not None or deadline.passed():
            if popen.poll() is None:
                popen.kill()
                popen.wait()
            text = log_path.read_text(errors="replace")
            raise RuntimeError(f"the {what} did not start (exit {popen.returncode}):\n{text}")
        time.sleep(0.05)
    info = _read_ready(ready, deadline)
    return HubProcess(popen, str(info["address"]), str(info.get("hub_id", "")), log_path, args)


def _read_ready(path: Path, deadline: Deadline) -> dict[str, object]:
    # The hub writes the file atomically; a partial read can only come from another writer.
    while True:
        try:
            info = json.loads(path.read_text())
            if isinstance(info, dict):
                return info
        except (OSError, ValueError):
            if deadline.passed():
                raise
        time.sleep(0.05)
