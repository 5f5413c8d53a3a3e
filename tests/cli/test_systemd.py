"""The committed systemd units: `systemd-analyze verify` finds nothing, and each unit's
ExecStart= runs (in a dry mode) under `env -i` with only the unit's own environment.

CI has no systemd as PID 1. `systemd-analyze verify --man=no FILE` needs none: it loads
the file offline and checks every key, specifier and the ExecStart= binary. Any output at
all (an unknown key is only a warning, exit 0) fails the test.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cortexctl.errors import EXIT_REFUSED, EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "contrib" / "systemd"
SYSTEM_CONFIG = ROOT / "contrib" / "config.toml"
INSTALLED = "/opt/cortexctl/bin/cortexctl"
ENTRY_POINT = str(Path(sys.executable).with_name("cortexctl"))
HARDENING = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "LimitNOFILE=",
    "CapabilityBoundingSet=",
)


def require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is required in CI (.ci/run installs it)")
        pytest.skip(f"{tool} is not installed")
    return found


def unit_entries(path: Path) -> dict[str, list[str]]:
    """Key -> values of a unit file, continuation lines joined."""
    entries: dict[str, list[str]] = {}
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or line.startswith("["):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        if "=" in logical:
            key, _, value = logical.partition("=")
            entries.setdefault(key.strip(), []).append(value.strip())
        logical = ""
    return entries


def installed_copy(unit: Path, folder: Path, name: str) -> Path:
    """The unit with its install prefix pointed at this checkout's entry point."""
    copy = folder / name
    copy.write_text(unit.read_text().replace(INSTALLED, ENTRY_POINT))
    return copy


@pytest.mark.parametrize(
    ("unit", "instance"),
    [
        ("cortex-hub.service", "cortex-hub.service"),
        ("cortex-agent@.service", "cortex-agent@build-01.service"),
    ],
)
def test_systemd_analyze_verify_finds_nothing(unit: str, instance: str, tmp_path: Path) -> None:
    analyze = require("systemd-analyze")
    copy = installed_copy(UNITS / unit, tmp_path, instance)
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).strip() == ""


@pytest.mark.parametrize("unit", ["cortex-hub.service", "cortex-agent@.service"])
def test_units_are_hardened_and_do_not_restart_what_a_restart_cannot_fix(unit: str) -> None:
    text = (UNITS / unit).read_text()
    for line in HARDENING:
        assert f"\n{line}" in text, f"{unit} lacks {line}"
    entries = unit_entries(UNITS / unit)
    assert entries["Restart"] == ["on-failure"]
    prevented = {int(code) for code in entries["RestartPreventExitStatus"][0].split()}
    assert EXIT_USAGE in prevented
    if unit.startswith("cortex-agent"):
        assert EXIT_REFUSED in prevented  # a revoked agent is not restarted in a loop


def exec_start(
    unit: Path, instance: str, substitutions: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """ExecStart= as argv (specifiers and ${VARS} expanded) and the unit's Environment=."""
    entries = unit_entries(unit)
    (line,) = entries["ExecStart"]
    line = line.replace("%i", instance)
    for name, value in substitutions.items():
        line = line.replace("${" + name + "}", value)
    assert "${" not in line and "%" not in line, line
    argv = shlex.split(line)
    assert argv[0] == INSTALLED
    env: dict[str, str] = {}
    for assignment in entries.get("Environment", []):
        for item in shlex.split(assignment):
            key, _, value = item.partition("=")
            env[key] = value
    return [ENTRY_POINT, *argv[1:]], env


def test_the_hub_units_exec_start_runs_under_env_i(tmp_path: Path) -> None:
    from tests.faults.certs import make_pki

    pki = make_pki(tmp_path / "pki")
    credentials = tmp_path / "credentials"  # what LoadCredential= gives the service
    credentials.mkdir()
    shutil.copy(pki.hub_cert, credentials / "hub.pem")
    shutil.copy(pki.hub_key, credentials / "hub.key")
    argv, env = exec_start(
        UNITS / "cortex-hub.service",
        "",
        {"CREDENTIALS_DIRECTORY": str(credentials), "RUNTIME_DIRECTORY": str(tmp_path / "run")},
    )
    # env -i: nothing of this process's environment; HOME as systemd sets it for User=,
    # and the system config moved to the committed sample (/etc is not ours to write).
    env |= {"HOME": str(tmp_path / "home"), "CORTEX_SYSTEM_CONFIG": str(SYSTEM_CONFIG)}
    done = subprocess.run(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv, "--dry-run", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["listen"] == "0.0.0.0:50051" and plan["tls"] is True
    # The unit's StateDirectory=cortexctl is where the system config puts the store.
    assert "StateDirectory=cortexctl\n" in (UNITS / "cortex-hub.service").read_text()
    assert plan["store"]["path"] == "/var/lib/cortexctl/cortex.db"
    assert plan["store"]["source"] == "file"
    assert plan["store"]["origin"] == str(SYSTEM_CONFIG)


def environment_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (# comments, blank lines)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def test_the_agent_units_exec_start_runs_under_env_i(tmp_path: Path) -> None:
    from tests.faults.certs import make_pki

    unit = UNITS / "cortex-agent@.service"
    argv, env = exec_start(unit, "build-01", {})
    assert "--name" in argv and argv[argv.index("--name") + 1] == "build-01"
    entries = unit_entries(unit)
    # The unit's StateDirectory= makes the folders its ExecStart= names, 0700.
    assert entries["StateDirectory"] == ["cortex-agent/%i/workspace cortex-agent/%i/state"]
    assert entries["StateDirectoryMode"] == ["0700"]
    var_lib = tmp_path / "var-lib"
    for sub in ("workspace", "state"):
        flag = f"--{sub.replace('state', 'state-dir')}"
        assert argv[argv.index(flag) + 1] == f"/var/lib/cortex-agent/build-01/{sub}"
        (var_lib / sub).mkdir(parents=True, mode=0o700)
        argv[argv.index(flag) + 1] = str(var_lib / sub)
    # EnvironmentFile= as the unit's header says to write it.
    assert entries["EnvironmentFile"] == ["-/etc/cortexctl/agent-%i.env"]
    env_file = tmp_path / "agent-build-01.env"
    env_file.write_text(
        "# as in the unit's header\nCORTEX_HUB=hub.internal:50051\n"
        "CORTEX_INVITE_TOKEN=cortex-invite.abc.def\n"
    )
    env |= environment_file(env_file) | {"HOME": str(tmp_path / "home")}
    if os.environ.get("PYTHONPATH"):  # a checkout run with PYTHONPATH: the code under test
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]

    def dry_run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv, *extra]
            + ["--dry-run", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=60,
        )

    # The unit alone talks plaintext to a remote hub: refused (exit 2, which the unit does
    # not restart), naming the fix the header gives (--ca-cert in a drop-in).
    plain = dry_run()
    assert plain.returncode == 2, plain.stderr
    assert "refusing plaintext to non-loopback hub hub.internal:50051" in plain.stderr
    assert "--ca-cert" in plain.stderr
    pki = make_pki(tmp_path / "pki")
    done = dry_run("--ca-cert", str(pki.ca))  # the drop-in's addition
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert (plan["hub"], plan["join"], plan["token_source"]) == (
        "hub.internal:50051",
        "invite",
        "env",
    )
    assert (plan["node_name"], plan["tls"], plan["dry_run"]) == ("build-01", True, True)
    assert plan["workspace"] == str(var_lib / "workspace")
    assert plan["state_dir"] == str(var_lib / "state")
    assert list((var_lib / "state").iterdir()) == []  # a dry run writes no credential
