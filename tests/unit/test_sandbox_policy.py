"""The STRICT policy model in core: allow entries, env allow-list, pins, needed features."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cortexctl.core import features, journal, nodes
from cortexctl.core.sandbox import (
    DEFAULT_LIMITS,
    EffectivePolicy,
    Limits,
    SandboxDefaults,
    allow_warnings,
    check_env_names,
    effective_policy,
    env_warnings,
    feature_violation,
    parse_allow_entries,
    required_features,
    risky_command,
    risky_env,
    task_violation,
)
from cortexctl.errors import InvalidArgument
from cortexctl.store.engine import Store
from tests.unit.test_core import join, new_invite

STRICT_POLICY = EffectivePolicy(
    mode="strict",
    allowed_commands=("ls", "cat"),
    max_runtime_s=0,
    max_output_bytes=0,
    revision=1,
    configured=True,
    allowed_prefixes=(("git", "status"), ("python3", "-I", "-m", "json.tool")),
    allowed_env=("CI", "MY_SETTING"),
)


def test_allow_entries_with_spaces_are_pins_never_names() -> None:
    names, pins = parse_allow_entries(["ls", "git status", "'python3' -I -m json.tool", "ls"])
    assert names == ["ls"]
    assert pins == [["git", "status"], ["python3", "-I", "-m", "json.tool"]]


@pytest.mark.parametrize("entry", ["/bin/sh", "./sh", "../x", "", "  ", "sh/x status", "'a"])
def test_bad_allow_entries_are_refused(entry: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_allow_entries([entry])


def test_env_names_are_checked() -> None:
    assert check_env_names(["B", "A", "B"]) == ["A", "B"]
    for bad in ["", "A=B", "A B", "A\0"]:
        with pytest.raises(InvalidArgument):
            check_env_names([bad])


def test_strict_refuses_any_env_name_not_allowed() -> None:
    assert task_violation(STRICT_POLICY, ["ls"], "", {"CI": "1", "MY_SETTING": "x"}) is None
    for name in ("BASH_ENV", "ENV", "BASH_FUNC_ls%%", "LD_PRELOAD", "GIT_CONFIG_COUNT", "FOO"):
        why = task_violation(STRICT_POLICY, ["ls"], "", {name: "x"})
        assert why is not None and name in why and "--allow-env" in why
    permissive = replace(STRICT_POLICY, mode="permissive")
    assert task_violation(permissive, ["ls"], "", {"BASH_ENV": "x"}) is None


def test_strict_argv_must_be_an_allowed_name_or_start_with_a_pin() -> None:
    ok = [["ls", "-la"], ["git", "status", "-s"], ["python3", "-I", "-m", "json.tool", "x"]]
    for argv in ok:
        assert task_violation(STRICT_POLICY, argv, "") is None, argv
    refused = [
        ["git"],
        ["git", "-c", "core.pager=sh", "status"],
        ["git", "log"],
        ["python3", "-c", "print(1)"],
        ["python3", "-m", "json.tool"],
        ["/bin/ls"],
        ["./ls"],
        ["sh", "-c", "id"],
    ]
    for argv in refused:
        why = task_violation(STRICT_POLICY, argv, "")
        assert why is not None, argv
    assert "allowed prefix" in (task_violation(STRICT_POLICY, ["git", "log"], "") or "")


def test_every_strict_policy_needs_policy_env() -> None:
    assert required_features(replace(STRICT_POLICY, allowed_prefixes=())) == [features.POLICY_ENV]
    assert required_features(replace(STRICT_POLICY, deny_network=True, limits=DEFAULT_LIMITS)) == [
        features.POLICY_ENV,
        features.POLICY_ARGV_PINS,
        features.POLICY_NETWORK,
        features.POLICY_RLIMITS,
    ]
    assert required_features(replace(STRICT_POLICY, mode="permissive", allowed_prefixes=())) == []


def test_missing_features_are_named() -> None:
    why = feature_violation(STRICT_POLICY, ["tasks", "sync"], "node n1 (nd_x)")
    assert why is not None
    assert why.startswith("FAILED_PRECONDITION")
    assert "policy.env, policy.argv_pins" in why and "n1" in why
    assert feature_violation(STRICT_POLICY, list(features.POLICY_FEATURES), "n1") is None


def test_effective_policy_merges_hub_defaults_with_the_nodes_own(fresh_store: Store) -> None:
    join(fresh_store, new_invite(fresh_store))
    defaults = SandboxDefaults(
        allowed_commands=("ls",),
        allowed_prefixes=(("git", "status"),),
        allowed_env=("CI",),
        limits=Limits(cpu_seconds=10, open_files=64),
    )
    with fresh_store.session(write=True) as session:
        node = nodes.resolve_node(session, "n1")
        policy = effective_policy(node, defaults)
        assert policy.allowed_prefixes == (("git", "status"),)
        nodes.set_sandbox(
            session,
            ["n1"],
            all_nodes=False,
            mode=None,
            allowed_commands=["cat", "git log"],
            defaults=defaults,
            add_env=["MY_SETTING"],
            deny_network=True,
            limits={"open_files": 32},
        )
        policy = effective_policy(nodes.resolve_node(session, "n1"), defaults)
    assert policy.mode == "strict"
    assert policy.allowed_commands == ("cat",)
    assert policy.allowed_prefixes == (("git", "log"),)
    assert policy.allowed_env == ("CI", "MY_SETTING")
    assert policy.deny_network is True
    assert policy.limits == Limits(cpu_seconds=10, open_files=32)


def test_hub_refuses_env_at_submission_and_at_dispatch(fresh_store: Store) -> None:
    join(fresh_store, new_invite(fresh_store))
    defaults = SandboxDefaults(allowed_commands=("ls",), allowed_env=("CI",))
    with fresh_store.session(write=True) as session:
        node = nodes.resolve_node(session, "n1")
        refused = journal.submit_task(
            session, node, argv=["ls"], env={"BASH_ENV": "/x"}, defaults=defaults
        )
        queued = journal.submit_task(session, node, argv=["ls"], env={"CI": "1"}, defaults=defaults)
    assert refused.state == journal.REJECTED and "BASH_ENV" in refused.error
    assert queued.state == journal.PENDING
    # The hub-wide allow-list shrinks before the task is sent: dispatch refuses it too.
    with fresh_store.session(write=True) as session:
        node = nodes.resolve_node(session, "n1")
        claimed = journal.claim_pending(
            session, node, hub_id="h", stream_id="s", defaults=replace(defaults, allowed_env=())
        )
        assert claimed == []
        assert journal.get_task(session, queued.id).state == journal.REJECTED
        assert "CI" in journal.get_task(session, queued.id).error


def test_dispatch_fails_closed_for_an_agent_without_the_features(fresh_store: Store) -> None:
    token = new_invite(fresh_store)
    with fresh_store.session(write=True) as session:
        nodes.join_with_invite(
            session,
            token,
            hostname="old",
            requested_name="old",
            agent_version="0.1",
            labels={},
            capabilities=["tasks", "sync"],
        )
    defaults = SandboxDefaults(allowed_commands=("ls",))
    with fresh_store.session(write=True) as session:
        node = nodes.resolve_node(session, "old")
        task = journal.submit_task(session, node, argv=["ls"], defaults=defaults)
        assert task.state == journal.PENDING
        assert (
            journal.claim_pending(session, node, hub_id="h", stream_id="s", defaults=defaults) == []
        )
        ended = journal.get_task(session, task.id)
    assert ended.state == journal.REJECTED
    assert ended.error.startswith("FAILED_PRECONDITION") and "policy.env" in ended.error


def test_a_rejoin_with_fewer_capabilities_replaces_them(fresh_store: Store) -> None:
    joined = join(fresh_store, new_invite(fresh_store))
    with fresh_store.session(write=True) as session:
        node = nodes.rejoin(
            session,
            joined.credential,
            hostname="h",
            agent_version="old",
            labels={},
            capabilities=[],
        )
        assert node.capabilities == []


def test_warnings_name_risky_commands_and_env() -> None:
    for command in ("sh", "bash", "python3", "python3.11", "env", "xargs", "find", "awk", "git"):
        assert risky_command(command), command
    for command in ("ssh", "make", "tar", "vim", "less", "sed", "perl", "node"):
        assert risky_command(command), command
    assert risky_command("ls") is None and risky_command("cat") is None
    assert risky_command("ed") is None  # commands only from stdin, which is /dev/null
    assert allow_warnings(["ls"], [["ls", "-l"]]) == []
    [bare] = allow_warnings(["git"], [])
    assert "arbitrary code" in bare and "--allow 'git SUBCOMMAND'" in bare
    [pinned] = allow_warnings([], [["find", "."]])
    assert "-exec" in pinned and "bubblewrap" in pinned and "credential" in pinned
    for name in ("BASH_FUNC_ls%%", "BASH_ENV", "ENV", "LD_PRELOAD", "GIT_SSH_COMMAND"):
        assert risky_env(name), name
    for name in ("PYTHONSTARTUP", "PERL5OPT", "LESSOPEN", "NODE_OPTIONS", "RUBYOPT", "IFS"):
        assert risky_env(name), name
    for name in ("JAVA_TOOL_OPTIONS", "PAGER", "EDITOR", "PS4", "SHELLOPTS", "PATH"):
        assert risky_env(name), name
    assert risky_env("CI") is None and risky_env("MY_SETTING") is None
    assert len(env_warnings(["CI", "LD_PRELOAD", "GIT_DIR"])) == 2


RUN_ANY_CODE = """valgrind tmux screen ipython ipython3 gdb strace ltrace uv uvx pipx poetry
pdm hatch nox tox pytest make cmake ninja flock timeout nice nohup setsid stdbuf chroot
unshare nsenter watch parallel ssh scp vi vim nvim emacs"""
RUN_CODE = {
    # name: a word the warning must carry (the option or way it runs code), or ""
    "split": "--filter",
    "sort": "--compress-program",
    "tar": "--to-command",
    "zip": "-TT",
    "sed": "e command",
    "rsync": "-e",
    "nc": "-e",
    "ncat": "-e",
    "netcat": "-e",
    "socat": "SYSTEM:",
    "rg": "--pre",
    "less": "lesskey",
    "man": "-P",
    **dict.fromkeys(RUN_ANY_CODE.split(), ""),
}


@pytest.mark.parametrize(("command", "how"), RUN_CODE.items())
def test_commands_that_run_code_warn_with_how(command: str, how: str) -> None:
    why = risky_command(command)
    assert why is not None and how in why, why
    [warning] = allow_warnings([command], [])
    assert "arbitrary code" in warning
    [pinned] = allow_warnings([], [[command, "x"]])
    assert "only the first arguments" in pinned and "bubblewrap" in pinned


@pytest.mark.parametrize("command", ["cp", "mv", "tee", "dd", "install", "ln", "unzip", "wget"])
def test_commands_that_write_any_file_warn_about_the_credential(command: str) -> None:
    assert risky_command(command) is None  # they write files; they run no code
    for warning in (*allow_warnings([command], []), *allow_warnings([], [[command, "a"]])):
        assert "write any file" in warning and "credential in its state dir" in warning
        assert "arbitrary code" not in warning and "--isolation bwrap" in warning


def test_migration_adds_the_policy_columns_to_existing_nodes(database_url: str) -> None:
    from sqlalchemy import text

    from cortexctl.store.engine import SCHEMA_HEAD, upgrade

    store = Store(database_url)
    try:
        upgrade(store, "0001")
        with store.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO nodes (id, name, hostname, agent_version, labels, capabilities,"
                    " credential_hash, policy_revision, created_at) VALUES ('nd_old', 'old', '',"
                    " '', '{}', '[]', 'x', 1, '2026-01-01 00:00:00')"
                )
            )
        assert upgrade(store) == ("0001", SCHEMA_HEAD)
        with store.session() as session:
            node = nodes.resolve_node(session, "old")
            assert (node.allowed_prefixes, node.allowed_env, node.deny_network, node.limits) == (
                None,
                None,
                None,
                None,
            )
            policy = effective_policy(node, SandboxDefaults())
        assert policy.mode == "strict" and policy.limits == DEFAULT_LIMITS
    finally:
        store.dispose()
