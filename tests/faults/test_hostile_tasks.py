"""Hostile tasks against a real hub and a real agent under STRICT, with common tools allowed.

Every trick aims at one of two prizes: running a shell (or any code not on the allow-list),
or reading the agent's credential. Each payload, if it ever ran, would leave a canary file
in the workspace and print PWNED; each run checks for both, and for the credential's
secret in the task's output. The agent itself is started with the same hostile variables in
its own environment, so the agent's scrub is tested as well as the hub's refusal.

Attack classes: environment-driven code execution (bash/sh startup files, exported bash
functions, xtrace prompts, loader, git, python, perl, less, pager, editor, node/ruby/java
option variables, PATH and HOME), argument tricks outside the pins, path tricks on argv[0]
(absolute, ./, ../, a workspace symlink named like an allowed command), and — inside
bubblewrap — writes outside the workspace, reading the state dir, and the network.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from cortexctl.proto import mesh_pb2 as pb
from cortexctl.proto import mesh_pb2_grpc as pb_grpc
from tests.conftest import wait_until
from tests.helpers import CORTEXCTL, Mesh, Proc, child_env, cli_json, run_cli

pytestmark = pytest.mark.integration

SECRET_MARK = "node_credential"  # the credential file's key; its value is the secret

ALLOW = [
    "ls",
    "cat",
    "printenv",
    "ldd",  # a bash script: the target of BASH_ENV and exported functions
    "which",  # a sh script: the target of ENV, PS4 + SHELLOPTS
    "git status",
    "git log --oneline",
    "python3 -I -m json.tool",
    "gawk --sandbox",
]


def need_bwrap() -> None:
    if shutil.which("bwrap") is None:
        if os.environ.get("CI"):
            pytest.fail("bubblewrap (bwrap) is required in CI and is not installed")
        pytest.skip("bubblewrap (bwrap) is not installed")


@dataclass
class Arena:
    """The workspace prepared with payloads, and how to tell whether one ever ran."""

    workspace: Path

    @property
    def canary(self) -> Path:
        return self.workspace / "canary"

    @property
    def payload(self) -> str:
        return str(self.workspace / "payload.sh")

    def prepare(self) -> None:
        ws = self.workspace
        self.canary.mkdir(parents=True, exist_ok=True)
        script = ws / "payload.sh"
        script.write_text(f'#!/bin/sh\necho PWNED\ntouch "{self.canary}/pwned.$$"\n')
        script.chmod(0o755)
        (ws / "pylib" / "json").mkdir(parents=True, exist_ok=True)
        evil_py = f"import os\nos.system({self.payload!r})\n"
        (ws / "pylib" / "json" / "__init__.py").write_text(evil_py)
        (ws / "json").mkdir(exist_ok=True)  # what `python3 -m` would import from the cwd
        (ws / "json" / "__init__.py").write_text(evil_py)
        (ws / "startup.py").write_text(evil_py)
        (ws / "data.json").write_text('{"a": 1}')
        (ws / "sh").symlink_to("/bin/sh")
        (ws / "bin").mkdir(exist_ok=True)
        for name in ("ls", "cat", "git"):  # named like allowed commands, really a shell
            (ws / "bin" / name).symlink_to("/bin/sh")
        home = ws / "evilhome"
        home.mkdir(exist_ok=True)
        (home / ".gitconfig").write_text(f"[core]\n\tfsmonitor = {self.payload}\n")
        (home / ".bashrc").write_text(f"{self.payload}\n")

    def pwned(self) -> list[str]:
        return sorted(p.name for p in self.canary.iterdir())


def hostile_env(arena: Arena) -> dict[str, str]:
    """Variables that make an allowed command run the payload, were they to reach it."""
    p = arena.payload
    ws = str(arena.workspace)
    return {
        "BASH_ENV": p,
        "ENV": p,
        "BASH_FUNC_test%%": f"() {{ {p}; }}",
        "BASH_FUNC_printf%%": f"() {{ {p}; }}",
        "SHELLOPTS": "xtrace",
        "PS4": f"$({p})",
        "LD_PRELOAD": f"{ws}/evil.so",
        "LD_LIBRARY_PATH": ws,
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "core.fsmonitor",
        "GIT_CONFIG_VALUE_0": p,
        "GIT_SSH_COMMAND": p,
        "GIT_PAGER": p,
        "GIT_EXTERNAL_DIFF": p,
        "PAGER": p,
        "EDITOR": p,
        "LESSOPEN": f"|{p} %s",
        "PYTHONSTARTUP": f"{ws}/startup.py",
        "PYTHONPATH": f"{ws}/pylib",
        "PYTHONINSPECT": "1",
        "PERL5OPT": f"-e system('{p}')",
        "NODE_OPTIONS": f"--require {ws}/startup.js",
        "RUBYOPT": f"-r{ws}/evil.rb",
        "JAVA_TOOL_OPTIONS": f"-javaagent:{ws}/evil.jar",
        "HOME": f"{ws}/evilhome",
        "PATH": f"{ws}/bin:{ws}",
        "GCONV_PATH": ws,
        "GLIBC_TUNABLES": "glibc.malloc.check=3",
        "IFS": "/",
    }


def agent_env(arena: Arena) -> dict[str, str]:
    """The hostile variables the agent itself is started with (ones that would break the
    agent's own Python, or its PATH, are left out: they are the agent operator's choice)."""
    skip = {"PYTHONPATH", "PYTHONINSPECT", "PATH", "HOME"}
    return {k: v for k, v in hostile_env(arena).items() if k not in skip}


# The allowed command each env trick is aimed at (one that would honour it).
LDD = ["ldd", "/bin/true"]
WHICH = ["which", "ls"]
GIT_STATUS = ["git", "status"]
GIT_LOG = ["git", "log", "--oneline"]
PYTHON = ["python3", "-I", "-m", "json.tool", "data.json"]
TARGET_OF = {
    "BASH_ENV": LDD,
    "BASH_FUNC_test%%": LDD,
    "BASH_FUNC_printf%%": LDD,
    "ENV": WHICH,
    "SHELLOPTS": WHICH,
    "PS4": WHICH,
    "IFS": WHICH,
    "GIT_CONFIG_COUNT": GIT_STATUS,
    "GIT_CONFIG_KEY_0": GIT_STATUS,
    "GIT_CONFIG_VALUE_0": GIT_STATUS,
    "HOME": GIT_STATUS,
    "GIT_PAGER": GIT_LOG,
    "PAGER": GIT_LOG,
    "LESSOPEN": GIT_LOG,
    "GIT_EXTERNAL_DIFF": GIT_LOG,
    "PYTHONSTARTUP": PYTHON,
    "PYTHONPATH": PYTHON,
    "PYTHONINSPECT": PYTHON,
}

ARGUMENT_TRICKS: list[list[str]] = [
    ["python3", "-c", "import os; os.system('sh')"],
    ["python3", "-I", "-c", "import os; os.system('sh')"],
    ["python3", "-m", "json.tool", "data.json"],  # would import ./json from the workspace
    ["git", "-c", "core.pager=sh", "log"],
    ["git", "-c", "core.fsmonitor=sh", "status"],
    ["git", "--exec-path=.", "status"],
    ["git", "log"],
    ["git"],
    ["gawk", 'BEGIN { system("sh") }'],
    ["find", ".", "-exec", "sh", "-c", "id", ";"],
    ["env", "sh", "-c", "id"],
    ["xargs", "sh"],
    ["sh", "-c", "id"],
    ["bash"],
]

PATH_TRICKS: list[list[str]] = [
    ["/bin/sh", "-c", "id"],
    ["/usr/bin/ls"],
    ["./sh", "-c", "id"],
    ["../sh"],
    ["bin/ls"],
    ["./bin/cat"],
    ["ls/"],
    [".", "x"],
    ["..", "x"],
]


def contained(arena: Arena) -> list[tuple[list[str], str]]:
    """Allowed by the policy: they run, and must still run no payload."""
    return [
        (["gawk", "--sandbox", f'BEGIN {{ system("{arena.payload}") }}'], ""),  # disabled
        (["gawk", "--sandbox", f'BEGIN {{ print "x" | "{arena.payload}" }}'], ""),
        *CONTAINED,
    ]


CONTAINED: list[tuple[list[str], str]] = [
    (["python3", "-I", "-m", "json.tool", "data.json"], ""),  # -I: no ./json import
    (["ls"], "bin"),  # ls in a directory holding `ls` -> /bin/sh: the real ls runs
    (["cat", "ls"], "bin"),
    (["git", "status"], ""),
    (["ldd", "/bin/true"], ""),
    (["which", "ls"], ""),
    (["printenv"], ""),
]


def submit(node: str, argv: list[str], env: dict[str, str] | None = None, cwd: str = "") -> Any:
    args = ["tasks", "submit", node, "--json"]
    for key, value in (env or {}).items():
        args += ["--env", f"{key}={value}"]
    if cwd:
        args += ["--cwd", cwd]
    result = run_cli(*args, "--", *argv)
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


def finished(ids: list[str]) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        views = [cli_json("tasks", "show", task_id) for task_id in ids]
        if all(v["state"] not in ("pending", "dispatched", "running") for v in views):
            return views
        return None

    return list(wait_until(done, 60, "the hostile tasks to end"))


def start(mesh: Mesh, arena: Arena, name: str, isolation: str) -> None:
    saved = mesh.env
    mesh.env = {**saved, **agent_env(arena)}
    try:
        mesh.start_agent(name, mesh.invite(), "--isolation", isolation)
    finally:
        mesh.env = saved
    result = run_cli("nodes", "sandbox", name, "--strict", *(f"--allow={a}" for a in ALLOW))
    assert result.exit_code == 0, result.stderr
    assert run_cli("nodes", "sandbox", name, "--allow-env", "CI").exit_code == 0


def leaked(views: list[dict[str, Any]], secret: str) -> list[str]:
    bad = []
    for view in views:
        text = "".join(str(view.get(key, "")) for key in ("stdout", "stderr", "error"))
        if "PWNED" in text or secret in text or "cannot be preloaded" in text:
            bad.append(f"{view['argv']}: {text[:300]!r}")
    return bad


def credential_secret(mesh: Mesh, name: str) -> str:
    data = json.loads((mesh.root / "agents" / name / "state" / "credential.json").read_text())
    return str(data[SECRET_MARK]).rsplit(".", 1)[-1]


@pytest.mark.parametrize("isolation", ["none", "bwrap"])
def test_no_env_argument_or_path_trick_runs_a_shell(mesh: Mesh, isolation: str) -> None:
    if isolation == "bwrap":
        need_bwrap()
    arena = Arena(mesh.workspace("n1"))
    arena.prepare()
    start(mesh, arena, "n1", isolation)
    secret = credential_secret(mesh, "n1")

    # 1. The hub refuses, at submission, every env name the operator did not allow.
    refused_env = [
        submit("n1", TARGET_OF.get(name, ["ls"]), {name: value})
        for name, value in hostile_env(arena).items()
    ]
    # All of them at once too, and a harmless-looking name: deny by default, not a list.
    refused_env.append(submit("n1", LDD, {**hostile_env(arena), "CI": "1"}))
    refused_env.append(submit("n1", ["ls"], {"MY_HARMLESS_SETTING": "1"}))
    assert {v["state"] for v in refused_env} == {"rejected"}
    assert all("--allow-env" in v["error"] for v in refused_env)

    # 2. Argument and path tricks are refused too: not an allowed name, not a pinned prefix.
    refused_argv = [submit("n1", argv) for argv in ARGUMENT_TRICKS + PATH_TRICKS]
    assert [v["argv"] for v in refused_argv if v["state"] != "rejected"] == []

    # 3. What the policy allows runs, with the agent's hostile environment scrubbed.
    ran = [submit("n1", argv, {"CI": "1"}, cwd)["id"] for argv, cwd in contained(arena)]
    views = finished(ran)
    by_argv = {tuple(v["argv"]): v for v in views}
    assert [v["argv"] for v in views if v["state"] == "rejected"] == []
    assert [v["state"] for v in views[:2]] == ["failed", "failed"]  # gawk refused both
    assert by_argv[("ls",)]["stdout"].split() == ["cat", "git", "ls"]  # the real ls
    env = dict(line.split("=", 1) for line in by_argv[("printenv",)]["stdout"].splitlines())
    # The launchers add PWD (the working directory the task starts in), nothing else.
    assert set(env) - {"PWD"} == {"PATH", "HOME", "LANG", "CORTEX_TASK_ID", "CI"}
    assert str(arena.workspace) not in env["PATH"]

    assert leaked(views + refused_env + refused_argv, secret) == []
    assert arena.pwned() == []


def test_bubblewrap_keeps_even_a_shell_away_from_the_credential_and_the_disk(
    mesh: Mesh, tmp_path: Path
) -> None:
    need_bwrap()
    arena = Arena(mesh.workspace("n1"))
    arena.prepare()
    start(mesh, arena, "n1", "bwrap")
    secret = credential_secret(mesh, "n1")
    state = mesh.root / "agents" / "n1" / "state"
    outside = tmp_path / "outside"
    outside.mkdir()
    # What STRICT does not stop, said honestly: a pin of find still takes -exec, and the
    # pinned `git status` runs the fsmonitor hook the workspace's repository configures.
    # Both run a shell; inside bubblewrap it can neither see the state dir nor write outside.
    repo = arena.workspace / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=60)
    escape = (
        f"cat {state}/credential.json; ls -A {state}; echo x > {outside}/escaped;"
        " echo x > /etc/cortex-escaped; echo x > $HOME/written-inside"
    )
    hook = arena.workspace / "hook.sh"
    hook.write_text(f"#!/bin/sh\n{escape}\necho x > $HOME/fsmonitor-ran\n")
    hook.chmod(0o755)
    subprocess.run(["git", "-C", str(repo), "config", "core.fsmonitor", str(hook)], check=True)
    run_cli("nodes", "sandbox", "n1", "--strict", *(f"--allow={a}" for a in [*ALLOW, "find ."]))
    ids = [
        submit("n1", ["find", ".", "-maxdepth", "0", "-exec", "sh", "-c", escape, ";"])["id"],
        submit("n1", ["cat", f"{state}/credential.json"])["id"],
        submit("n1", ["ls", "-A", str(state)])["id"],
        submit("n1", ["git", "status"], cwd="repo")["id"],
    ]
    views = finished(ids)
    assert [v["state"] for v in views] == ["succeeded", "failed", "succeeded", "succeeded"], views
    assert all(secret not in v["stdout"] + v["stderr"] for v in views)
    assert views[2]["stdout"] == ""  # the state dir is an empty tmpfs
    assert (arena.workspace / "fsmonitor-ran").exists()  # git status did run the hook
    assert not (outside / "escaped").exists()
    assert not Path("/etc/cortex-escaped").exists()
    assert (arena.workspace / "written-inside").exists()  # the workspace is writable


def test_no_network_blocks_a_loopback_port_and_needs_bubblewrap(mesh: Mesh) -> None:
    need_bwrap()
    arena = Arena(mesh.workspace("boxed"))
    arena.prepare()
    mesh.start_agent("boxed", mesh.invite("--sandbox", "permissive"), "--isolation", "bwrap")
    mesh.start_agent("plain", mesh.invite("--sandbox", "permissive"), "--isolation", "none")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        probe = f"exec 3<>/dev/tcp/127.0.0.1/{server.getsockname()[1]} && echo connected"
        [open_view] = finished([cli_json("tasks", "submit", "boxed", "--script", probe)["id"]])
        assert open_view["stdout"] == "connected\n", open_view
        for node in ("boxed", "plain"):
            assert run_cli("nodes", "sandbox", node, "--no-network").exit_code == 0
        wait_until(
            lambda: all(
                cli_json("nodes", "show", n)["policy_acked"]
                == cli_json("nodes", "show", n)["policy_revision"]
                for n in ("boxed", "plain")
            ),
            10,
            "the nodes to apply --no-network",
        )
        boxed, plain = finished(
            [
                cli_json("tasks", "submit", "boxed", "--script", probe)["id"],
                cli_json("tasks", "submit", "plain", "--script", probe)["id"],
            ]
        )
    assert boxed["state"] == "failed" and "connected" not in boxed["stdout"]
    # The agent without bubblewrap did not report policy.network: the hub never sends it.
    assert plain["state"] == "rejected" and plain["dispatched_at"] is None
    assert plain["error"].startswith("FAILED_PRECONDITION") and "policy.network" in plain["error"]


# --------------------------------------------------------------------------- a lying hub


class LyingHub(pb_grpc.AgentOrchestratorServicer):
    """A hub that sends whatever the test says, to see what the agent itself refuses."""

    def __init__(self) -> None:
        self.outbox: queue.Queue[pb.HubMessage] = queue.Queue()
        self.updates: queue.Queue[pb.TaskUpdate] = queue.Queue()
        self.capabilities: list[str] = []

    def SyncConfiguration(self, request: Any, context: Any) -> pb.NodeConfiguration:
        self.capabilities = list(request.capabilities)
        return pb.NodeConfiguration(
            node_id="nd_liar",
            node_credential="cortex-node.nd_liar.notasecret",
            sandbox=pb.SandboxPolicy(mode=pb.SANDBOX_MODE_STRICT),
            heartbeat_interval_ms=500,
            hub_id="liar",
        )

    def TaskStream(self, request_iterator: Any, context: Any) -> Iterator[pb.HubMessage]:
        def read() -> None:
            try:
                for message in request_iterator:
                    if message.WhichOneof("body") == "task_update":
                        self.updates.put(message.task_update)
            except grpc.RpcError:
                return  # the test is over and the server stopped

        threading.Thread(target=read, daemon=True).start()
        while context.is_active():
            try:
                yield self.outbox.get(timeout=0.2)
            except queue.Empty:
                continue

    def result(self, task_id: str) -> pb.TaskUpdate:
        while True:
            update = self.updates.get(timeout=60)
            if update.task_id == task_id and update.state != pb.RUNNING:
                return update


def test_the_agent_rechecks_what_a_hub_sends(
    tmp_path: Path, isolated_env: Path, store_env: dict[str, str]
) -> None:
    hub = LyingHub()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_AgentOrchestratorServicer_to_server(hub, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    arena = Arena(tmp_path / "ws")
    arena.prepare()
    env = {**child_env(store_env, isolated_env), **agent_env(arena)}
    agent = Proc(
        [
            *CORTEXCTL,
            "agent",
            "--hub",
            f"127.0.0.1:{port}",
            "--token",
            "cortex-invite.x.y",
            "--workspace",
            str(arena.workspace),
            "--state-dir",
            str(tmp_path / "state"),
            "--isolation",
            "none",
        ],
        env,
        tmp_path / "agent.log",
    ).start()
    try:
        strict = pb.SandboxPolicy(
            mode=pb.SANDBOX_MODE_STRICT,
            allowed_commands=["ldd", "printenv"],
            allowed_env=["CI"],
            revision=2,
        )
        hub.outbox.put(pb.HubMessage(policy=strict))

        def assign(task_id: str, argv: list[str], env: dict[str, str]) -> pb.TaskUpdate:
            hub.outbox.put(
                pb.HubMessage(assign=pb.TaskAssignment(task_id=task_id, argv=argv, env=env))
            )
            return hub.result(task_id)

        for number, (name, value) in enumerate(hostile_env(arena).items()):
            update = assign(f"env-{number}", ["ldd", "/bin/true"], {name: value})
            assert update.state == pb.REJECTED and "allowed_env" in update.error, name
        for number, argv in enumerate(PATH_TRICKS + [["sh", "-c", "id"]]):
            update = assign(f"path-{number}", argv, {})
            assert update.state == pb.REJECTED, argv
        scrubbed = assign("printenv", ["printenv"], {"CI": "1"})
        assert scrubbed.state == pb.SUCCEEDED, scrubbed.error
        names = {line.split("=", 1)[0] for line in scrubbed.stdout.decode().splitlines()}
        assert names - {"PWD"} == {"PATH", "HOME", "LANG", "CORTEX_TASK_ID", "CI"}
        assert "policy.env" in hub.capabilities and "isolation.none" in hub.capabilities
        assert arena.pwned() == []
        # The control: the same trick under PERMISSIVE does run the payload, so the
        # canary above would have caught it.
        hub.outbox.put(pb.HubMessage(policy=pb.SandboxPolicy(mode=2, revision=3)))
        control = assign("control", ["ldd", "/bin/true"], {"BASH_ENV": arena.payload})
        assert control.state == pb.SUCCEEDED and b"PWNED" in control.stdout
        assert arena.pwned() != []
    finally:
        agent.kill()
        server.stop(None)
