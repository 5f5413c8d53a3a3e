"""Real processes for integration tests: `cortexctl serve` and `cortexctl agent`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from tests.conftest import wait_until

CORTEXCTL = [sys.executable, "-m", "cortexctl"]


def run_cli(*args: str, input: str | None = None) -> Result:
    """Run a command in-process (the environment carries the store location)."""
    from cortexctl.cli.app import app

    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)


def cli_json(*args: str) -> Any:
    result = run_cli(*args, "--json")
    assert result.exit_code == 0, f"{args} exited {result.exit_code}: {result.stderr}"
    return json.loads(result.stdout)


@dataclass
class Proc:
    """A cortexctl child process with its log file."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.args, env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, signum: int) -> None:
        assert self.popen is not None
        self.popen.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.args[3]} did not stop on SIGTERM:\n{self.log()}") from None

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@dataclass
class Hub:
    workdir: Path
    env: dict[str, str]
    heartbeat: str = "1s"
    extra: Sequence[str] = ()
    proc: Proc | None = None
    address: str = ""
    hub_id: str = ""
    restarts: int = 0

    def start(self, listen: str | None = None) -> Hub:
        ready = self.workdir / f"ready-{self.restarts}.json"
        args = [
            *CORTEXCTL,
            "serve",
            "--listen",
            listen or self.address or "127.0.0.1:0",
            "--ready-file",
            str(ready),
            "--heartbeat-interval",
            self.heartbeat,
            "--log-format",
            "text",
            *self.extra,
        ]
        self.proc = Proc(args, self.env, self.workdir / "hub.log").start()
        wait_until(lambda: ready.exists() or not self.proc.alive(), 30, "the hub to serve")
        assert ready.exists(), f"hub did not start:\n{self.proc.log()}"
        info = json.loads(ready.read_text())
        self.address, self.hub_id = info["address"], info["hub_id"]
        self.restarts += 1
        return self

    def stop(self) -> int | None:
        return self.proc.stop() if self.proc else None

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()

    def log(self) -> str:
        return self.proc.log() if self.proc else ""


@dataclass
class Mesh:
    """A hub plus agents, all real processes, sharing one store."""

    root: Path
    env: dict[str, str]
    hub: Hub
    agents: list[Proc] = field(default_factory=list)

    def invite(self, *extra: str) -> str:
        return str(cli_json("invites", "create", *extra)["token"])

    def start_agent(
        self, name: str, token: str | None = None, *extra: str, wait_online: bool = True
    ) -> Proc:
        workspace = self.root / "agents" / name / "workspace"
        workspace.mkdir(parents=True, exist_ok=True)
        args = [
            *CORTEXCTL,
            "agent",
            "--hub",
            self.hub.address,
            "--workspace",
            str(workspace),
            "--state-dir",
            str(self.root / "agents" / name / "state"),
            "--name",
            name,
            "--log-format",
            "text",
            *extra,
        ]
        if token is not None:
            args += ["--token", token]
        proc = Proc(args, self.env, self.root / "agents" / name / "agent.log").start()
        self.agents.append(proc)
        if wait_online:
            wait_until(
                lambda: self.node(name).get("online") or not proc.alive(),
                30,
                f"node {name} to come online",
            )
            assert proc.alive(), f"agent {name} exited:\n{proc.log()}"
        return proc

    def node(self, name: str) -> dict[str, Any]:
        nodes = cli_json("nodes", "list")
        return next((n for n in nodes if n["name"] == name), {})

    def workspace(self, name: str) -> Path:
        return self.root / "agents" / name / "workspace"

    def close(self) -> None:
        for agent in self.agents:
            agent.kill()
        self.hub.stop()


def child_env(store_env: dict[str, str], home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORTEX_")}
    env.update(store_env)
    env["HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return env
