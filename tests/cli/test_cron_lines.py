"""The README's crontab runs as written under cron's bare environment.

cron starts each line with `/bin/sh -c`, HOME, LOGNAME, SHELL=/bin/sh and the crontab's
own `PATH=` line — nothing else. The store comes from the system config, as it does for
the hub and operators (here moved to a temp file: /etc is not the test's to write).
"""

from __future__ import annotations

import grp
import os
import subprocess
from pathlib import Path

from tests.readme import INSTALL_PREFIX, ROOT, VENV_BIN, code_blocks


def crontab() -> tuple[dict[str, str], list[str]]:
    (lines,) = code_blocks("Running admin tasks from cron", "cron")
    env: dict[str, str] = {}
    commands: list[str] = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if sep and " " not in name:
            env[name] = value
            continue
        commands.append(" ".join(line.split()[5:]))  # after the five time fields
    return env, commands


def run_as_cron(
    command: str, crontab_env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    env = {
        "HOME": str(tmp_path / "root"),
        "LOGNAME": "root",
        "SHELL": "/bin/sh",
        "PATH": "/usr/bin:/bin",
    }
    env |= {key: value.replace(INSTALL_PREFIX, VENV_BIN) for key, value in crontab_env.items()}
    env["CORTEX_SYSTEM_CONFIG"] = str(tmp_path / "etc" / "config.toml")
    return subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()), "/bin/sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )


def test_the_crontab_needs_a_path_line_and_finds_the_hubs_store(tmp_path: Path) -> None:
    crontab_env, commands = crontab()
    assert crontab_env["PATH"].startswith(INSTALL_PREFIX + ":")
    assert [c.split()[:3] for c in commands] == [
        ["cortexctl", "gc", "locks"],
        ["cortexctl", "gc", "mirrors"],
        ["cortexctl", "gc", "invites"],
        ["cortexctl", "gc", "tasks"],
    ]
    # The system config as contrib/ ships it, pointed at a temp /var/lib/cortexctl.
    store = tmp_path / "var" / "lib" / "cortexctl"
    system = tmp_path / "etc" / "config.toml"
    system.parent.mkdir(parents=True)
    shipped = (ROOT / "contrib" / "config.toml").read_text()
    assert 'data_dir = "/var/lib/cortexctl"' in shipped
    assert 'group = "cortex"' in shipped
    # The hub's group exists where the units run; here the test's own group stands in.
    own_group = grp.getgrgid(os.getgid()).gr_name
    system.write_text(
        shipped.replace("/var/lib/cortexctl", str(store)).replace(
            'group = "cortex"', f'group = "{own_group}"'
        )
    )

    # No hub has made the store yet: cron mails a one-line error, nothing is created.
    missing = run_as_cron(commands[0], crontab_env, tmp_path)
    assert missing.returncode == 4
    assert missing.stderr.startswith(f"error: no store at {store / 'cortex.db'}")
    assert not store.exists()

    made = run_as_cron("cortexctl db upgrade --quiet", crontab_env, tmp_path)
    assert made.returncode == 0, made.stderr
    for command in commands:
        done = run_as_cron(command, crontab_env, tmp_path)
        assert done.returncode == 0, f"{command}: {done.stderr}"
        assert done.stdout == done.stderr == "", command  # --quiet: cron mails nothing
