"""The README's five-minute walk-through, run as written on a fresh machine.

A temp HOME with nothing in it (no config, no store), the installed entry point on PATH the
way the README puts it there, every command from the README's blocks in order: the hub and
the agent in the background, the third block as one shell session (so `id=$(...)` carries
over). A command followed by an `# error:` comment must fail with that error; every other
must succeed. The only change: the hub listens on a free port (`CORTEX_LISTEN`, documented),
not 50051, so parallel runs never collide.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

from cortexctl.errors import EXIT_REFUSED
from tests.conftest import wait_until
from tests.readme import VENV_BIN, code_blocks

TOKEN_PLACEHOLDER = "cortex-invite.…"
README_ADDRESS = "127.0.0.1:50051"


def free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    path_block, serve_block, join_block, use_block = code_blocks("Five-minute walk-through", "sh")
    assert path_block == ['export PATH="$PWD/.venv/bin:$PATH"']
    preamble = path_block[0].replace("$PWD/.venv/bin", VENV_BIN)
    home = tmp_path / "fresh-home"  # not the autouse fixture's: nothing in it
    home.mkdir()
    address = free_address()
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "CORTEX_LISTEN": address,
        "CORTEX_SYSTEM_CONFIG": str(tmp_path / "etc" / "config.toml"),
    }

    def shell(script: str, **kwargs: object) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["bash", "-c", f"{preamble}\n{script}"],
            env=env,
            cwd=home,
            text=True,
            start_new_session=True,
            **kwargs,  # type: ignore[call-overload]
        )

    def run(script: str, typed: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``script``; ``typed`` is what the operator types (pastes) on its stdin."""
        proc = shell(script, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate(typed or "", timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    background: list[subprocess.Popen[str]] = []
    try:
        assert serve_block == ["cortexctl serve"]
        hub_log = (tmp_path / "hub.log").open("w")
        background.append(shell(serve_block[0], stdout=hub_log, stderr=subprocess.STDOUT))
        wait_until(lambda: run("cortexctl nodes list").returncode == 0, 30, "the hub's store")

        invite_line, mkdir_line, paste_line, agent_line = [
            line.split("  #")[0] for line in join_block
        ]
        created = run(invite_line)
        assert created.returncode == 0, created.stderr
        token = created.stdout.split("token: ", 1)[1].split()[0]
        assert run(mkdir_line).returncode == 0
        pasted = run(paste_line, typed=token + "\n")  # the operator pastes the token
        assert pasted.returncode == 0, pasted.stderr
        assert (home / "invite.token").stat().st_mode & 0o077 == 0  # umask 077 as written
        assert token not in agent_line and README_ADDRESS in agent_line
        agent_log = (tmp_path / "agent.log").open("w")
        agent = shell(
            agent_line.replace(README_ADDRESS, address),
            stdout=agent_log,
            stderr=subprocess.STDOUT,
        )
        background.append(agent)

        def laptop_online() -> bool:
            listed = run("cortexctl nodes list -o json")
            return listed.returncode == 0 and any(
                n["name"] == "laptop" and n["status"] == "online" for n in json.loads(listed.stdout)
            )

        wait_until(laptop_online, 30, "laptop to be online")

        # The third block as one session; each command's exit code and output kept apart.
        steps: list[tuple[str, str | None]] = []
        for line in use_block:
            stripped = line.strip()
            if stripped.startswith("# error:"):
                steps[-1] = (steps[-1][0], stripped.removeprefix("# error:").strip())
            elif stripped and not stripped.startswith("#"):
                steps.append((line, None))
        script = []
        for number, (line, _) in enumerate(steps):
            script.append(f"{{ {line}\n}} >{tmp_path}/out{number} 2>{tmp_path}/err{number}")
            script.append(f"echo $? >{tmp_path}/rc{number}")
        session = run("\n".join(script))
        assert session.returncode == 0, session.stderr
        for number, (line, error) in enumerate(steps):
            code = int((tmp_path / f"rc{number}").read_text())
            out = (tmp_path / f"out{number}").read_text()
            err = (tmp_path / f"err{number}").read_text()
            if error is not None:
                assert code != 0, f"{line!r} should fail: {out}{err}"
                assert "rejected" in err and error.split("…")[0].strip() in err, err
            else:
                assert code == 0, f"{line!r} exited {code}: {err}"
            if "prints hi" in line:
                assert out == "hi\n"
        # The last step revoked the node: the agent stops for good, with the code its
        # systemd unit does not restart on.
        assert agent.wait(30) == EXIT_REFUSED
    finally:
        for proc in background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
