"""Real processes for integration tests: `cortexctl serve` and `cortexctl agent`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from cortexctl.bench.launcher import HubProcess, start_hub
from tests.conftest import DEADLINE_SCALE, wait_until

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
    """A real `cortexctl serve` (started through cortexctl.bench.launcher, like benchmarks)."""

    workdir: Path
    env: dict[str, str]
    heartbeat: str = "1s"
    extra: Sequence[str] = ()
    prefix: Sequence[str] = ()  # e.g. ("prlimit", "--nofile=1024:1024", "--")
    proc: HubProcess | None = None
    address: str = ""
    hub_id: str = ""
    restarts: int = 0

    def start(self, listen: str | None = None) -> Hub:
        try:
            self.proc = start_hub(
                self.workdir,
                self.env,
                "--heartbeat-interval",
                self.heartbeat,
                "--log-format",
                "text",
                *self.extra,
                listen=listen or self.address or "127.0.0.1:0",
                ready_name=f"ready-{self.restarts}.json",
                timeout_s=30 * DEADLINE_SCALE,
                prefix=self.prefix,
            )
        except RuntimeError as err:
            raise AssertionError(str(err)) from None
        self.address, self.hub_id = self.proc.address, self.proc.hub_id
        self.restarts += 1
        return self

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.stop()
        except RuntimeError as err:
            raise AssertionError(str(err)) from None

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
            # As the README says: never on the command line, where `ps` would show it.
            token_file = self.root / "agents" / name / "invite.token"
            token_file.write_text(token)
            token_file.chmod(0o600)
            args += ["--token-file", str(token_file)]
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
        # SIGTERM first: an agent that stops cancels its tasks, so none outlives the test
        # (an agent killed with -9 by a test has already been restarted or left on purpose).
        for agent in self.agents:
            if agent.alive():
                agent.signal(signal.SIGTERM)
        for agent in self.agents:
            if agent.alive():
                try:
                    agent.wait(10)
                except subprocess.TimeoutExpired:
                    agent.kill()
        self.hub.stop()


def scrape(address: str, name: str) -> float:
    """One sample of a hub's /metrics (served on ``address``)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name} at {address}")


def child_env(store_env: dict[str, str], home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CORTEX_")}
    if "CORTEX_SYSTEM_CONFIG" in os.environ:  # set by isolated_env: never the machine's
        env["CORTEX_SYSTEM_CONFIG"] = os.environ["CORTEX_SYSTEM_CONFIG"]
    env.update(store_env)
    env["HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Cli:
    """The CLI as a test runs it: in-process, on the store (``context`` None) or through
    a remote context to a real hub's admin API. The same test, the same assertions."""

    context: str | None = None
    hub: Hub | None = None

    @property
    def remote(self) -> bool:
        return self.context is not None

    def __call__(self, *args: str, input: str | None = None) -> Result:
        extra = ["--context", self.context] if self.context else []
        return run_cli(*extra, *args, input=input)

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.exit_code == 0, f"{args} exited {result.exit_code}: {result.stderr}"
        return json.loads(result.stdout)


def start_tls_hub(root: Path, env: dict[str, str]) -> tuple[Hub, Any]:
    """A real `cortexctl serve` with TLS from a CA made for the test; (hub, its Pki)."""
    from tests.faults.certs import make_pki

    pki = make_pki(root / "pki")
    extra = ["--tls-cert", str(pki.hub_cert), "--tls-key", str(pki.hub_key)]
    hub = Hub(root / "tls-hub", env, extra=extra)
    hub.workdir.mkdir(parents=True)
    hub.start("127.0.0.1:0")
    return hub, pki


def add_context(
    name: str, hub: Hub, ca: Path, role: str = "admin", *, root: Path
) -> tuple[Path, str]:
    """An admin token of ``role`` (made on the store) and a context using it; returns the
    token file and the token."""
    token = str(
        cli_json("admin-tokens", "create", "--role", role, "--name", f"{name}-{role}")["token"]
    )
    token_file = root / f"{name}.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    port = hub.address.rsplit(":", 1)[1]
    added = run_cli(
        "context",
        "add",
        name,
        "--hub",
        f"localhost:{port}",
        "--ca-cert",
        str(ca),
        "--token-file",
        str(token_file),
    )
    assert added.exit_code == 0, added.stderr
    return token_file, token


def add_node(name: str, *labels: str, permissive: bool = True) -> str:
    """A node joined through core on the store (no agent), PERMISSIVE unless told."""
    from cortexctl.config import load_settings
    from cortexctl.core import nodes
    from cortexctl.store.engine import Store

    extra = [arg for label in labels for arg in ("--label", label)]
    token = cli_json("invites", "create", *extra)["token"]
    store = Store(load_settings().database_url)
    try:
        with store.session(write=True) as session:
            joined = nodes.join_with_invite(
                session,
                token,
                hostname="h",
                requested_name=name,
                agent_version="",
                labels={},
                capabilities=[],
            )
            node_id = joined.node.id
    finally:
        store.dispose()
    if permissive:
        assert run_cli("nodes", "sandbox", name, "--permissive").exit_code == 0
    return node_id


@contextlib.contextmanager
def running_mesh(root: Path, env: dict[str, str]) -> Iterator[Mesh]:
    """A real hub (1 s heartbeats) on loopback for agents the test starts; closed after."""
    hub = Hub(root / "hub", env)
    hub.workdir.mkdir()
    hub.start()
    running = Mesh(root, env, hub)
    try:
        yield running
    finally:
        running.close()


def slow_poll_env(
    url: str, data_dir: Path, home: Path, monkeypatch: Any, **settings: str
) -> dict[str, str]:
    """A store for the CLI (in-process) and a hub whose poll is 60 s: what meets a deadline
    far below it was woken, not polled. ``settings``: more CORTEX_* for both."""
    store_env = {"CORTEX_DATABASE_URL": url, "CORTEX_DATA_DIR": str(data_dir), **settings}
    for key, value in store_env.items():
        monkeypatch.setenv(key, value)
    env = child_env(store_env, home)
    env["CORTEX_POLL_INTERVAL"] = "60s"  # the hub only; the CLI does not poll the hub
    return env
