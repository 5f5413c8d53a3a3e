"""Sandbox policy: a node's own, or the hub default, which is STRICT unless configured.

STRICT means: argv only (no shell); ``argv[0]`` a bare name in ``allowed_commands`` or the
argv starting with one of ``allowed_prefixes`` (pins such as ``git status``); the task's env
only names in ``allowed_env`` (deny by default); optional network denial; rlimits. The hub
checks this at submission and again at dispatch, where it also refuses a node whose agent
did not report the features the policy needs (``required_features``); the agent checks
again itself.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from cortexctl.core import features
from cortexctl.errors import InvalidArgument

if TYPE_CHECKING:
    from cortexctl.config import Settings
    from cortexctl.store.models import Node

STRICT = "strict"
PERMISSIVE = "permissive"
MODES = (STRICT, PERMISSIVE)

GIB = 1024**3


@dataclass(frozen=True)
class Limits:
    """setrlimit(2) limits of a task's processes; 0 leaves the agent's own limit."""

    cpu_seconds: int = 0  # RLIMIT_CPU
    address_space_bytes: int = 0  # RLIMIT_AS
    processes: int = 0  # RLIMIT_NPROC (counts every process of the agent's user)
    file_size_bytes: int = 0  # RLIMIT_FSIZE
    open_files: int = 0  # RLIMIT_NOFILE

    def any(self) -> bool:
        return any(asdict(self).values())

    def over(self, overrides: Mapping[str, Any] | None) -> Limits:
        """These limits with a node's own values laid over them."""
        known = {key: int(value) for key, value in (overrides or {}).items() if key in LIMIT_KEYS}
        return replace(self, **known)


LIMIT_KEYS = tuple(Limits.__dataclass_fields__)
DEFAULT_LIMITS = Limits(
    cpu_seconds=3600,
    address_space_bytes=8 * GIB,
    processes=4096,
    file_size_bytes=GIB,
    open_files=1024,
)


@dataclass(frozen=True)
class SandboxDefaults:
    """Hub-wide defaults, from settings."""

    mode: str = STRICT
    allowed_commands: tuple[str, ...] = ()
    max_runtime_s: int = 3600
    max_output_bytes: int = 1024 * 1024
    allowed_prefixes: tuple[tuple[str, ...], ...] = ()
    allowed_env: tuple[str, ...] = ()  # added to every node's own list
    deny_network: bool = False
    limits: Limits = field(default_factory=lambda: DEFAULT_LIMITS)


def sandbox_defaults(settings: Settings) -> SandboxDefaults:
    """The hub-wide defaults the settings give (the hub and the CLI read the same)."""
    section = settings.sandbox
    names, pins = parse_allow_entries(section.default_allowed_commands)
    return SandboxDefaults(
        mode=section.default_mode,
        allowed_commands=tuple(names),
        max_runtime_s=int(section.max_runtime),
        max_output_bytes=section.max_output_bytes,
        allowed_prefixes=tuple(tuple(pin) for pin in pins),
        allowed_env=tuple(check_env_names(section.allowed_env)),
        deny_network=section.network == "deny",
        limits=Limits(
            cpu_seconds=int(section.limit_cpu_time),
            address_space_bytes=section.limit_address_space,
            processes=section.limit_processes,
            file_size_bytes=section.limit_file_size,
            open_files=section.limit_open_files,
        ),
    )


@dataclass(frozen=True)
class EffectivePolicy:
    mode: str
    allowed_commands: tuple[str, ...]
    max_runtime_s: int
    max_output_bytes: int
    revision: int
    configured: bool  # False when the node has no mode of its own and runs on the default
    allowed_prefixes: tuple[tuple[str, ...], ...] = ()
    allowed_env: tuple[str, ...] = ()
    deny_network: bool = False
    limits: Limits = field(default_factory=Limits)


def effective_policy(node: Node, defaults: SandboxDefaults) -> EffectivePolicy:
    own_list = node.allowed_commands is not None
    return EffectivePolicy(
        mode=node.sandbox_mode or defaults.mode,
        allowed_commands=tuple(node.allowed_commands or ())
        if own_list
        else defaults.allowed_commands,
        max_runtime_s=defaults.max_runtime_s,
        max_output_bytes=defaults.max_output_bytes,
        revision=node.policy_revision,
        configured=node.sandbox_mode is not None,
        # Names and pins are one allow-list: a node's own replaces the default's whole.
        allowed_prefixes=tuple(tuple(p) for p in node.allowed_prefixes or ())
        if own_list
        else defaults.allowed_prefixes,
        allowed_env=tuple(sorted({*defaults.allowed_env, *(node.allowed_env or ())})),
        deny_network=defaults.deny_network if node.deny_network is None else node.deny_network,
        limits=defaults.limits.over(node.limits),
    )


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidArgument(f"bad sandbox mode {mode!r}: expected strict or permissive")
    return mode


def _check_bare(command: str, entry: str) -> None:
    if not command or "/" in command or command in (".", "..") or "\0" in command:
        raise InvalidArgument(
            f"bad allowed command {entry!r}: give a bare executable name such as 'ls', "
            "or a name with pinned arguments such as 'git status', not a path"
        )


def parse_allow_entries(entries: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Split `--allow` entries into bare names and argv pins ("git status" is a pin)."""
    names: set[str] = set()
    pins: list[list[str]] = []
    for entry in entries:
        try:
            words = shlex.split(entry)
        except ValueError as err:
            raise InvalidArgument(f"bad allow entry {entry!r}: {err}") from None
        if not words:
            raise InvalidArgument(f"bad allow entry {entry!r}: it names no command")
        _check_bare(words[0], entry)
        if any("\0" in word for word in words):
            raise InvalidArgument(f"bad allow entry {entry!r}: no NUL bytes")
        if len(words) == 1:
            names.add(words[0])
        elif words not in pins:
            pins.append(words)
    return sorted(names), sorted(pins)


def format_pin(pin: Sequence[str]) -> str:
    return shlex.join(pin)


_ENV_NAME = re.compile(r"[^\s=\0]+")


def check_env_names(names: Sequence[str]) -> list[str]:
    """Names for `--allow-env`: non-empty, no '=', NUL or whitespace."""
    for name in names:
        if not _ENV_NAME.fullmatch(name):
            raise InvalidArgument(
                f"bad environment variable name {name!r}: give a name such as MY_SETTING "
                "(no '=', spaces or NUL)"
            )
    return sorted(set(names))


def check_limits(limits: Mapping[str, int]) -> dict[str, int]:
    for key, value in limits.items():
        if key not in LIMIT_KEYS:
            raise InvalidArgument(f"unknown limit {key!r}: expected one of {', '.join(LIMIT_KEYS)}")
        if value < 0:
            raise InvalidArgument(f"bad limit {key}: must not be negative")
    return dict(limits)


def required_features(policy: EffectivePolicy) -> list[str]:
    """Capabilities a node's agent must have reported before it gets a task of this policy.

    Every STRICT policy needs ``policy.env`` (env deny-by-default is the rule), so an agent
    that reports none of these gets no STRICT task at all.
    """
    needed = []
    if policy.mode == STRICT:
        needed.append(features.POLICY_ENV)
        if policy.allowed_prefixes:
            needed.append(features.POLICY_ARGV_PINS)
    if policy.deny_network:
        needed.append(features.POLICY_NETWORK)
    if policy.limits.any():
        needed.append(features.POLICY_RLIMITS)
    return needed


def feature_violation(
    policy: EffectivePolicy, capabilities: Sequence[str], node_label: str
) -> str | None:
    """Why a node cannot be given a task of this policy (FAILED_PRECONDITION), or None."""
    missing = [name for name in required_features(policy) if name not in capabilities]
    if not missing:
        return None
    reported = ", ".join(capabilities) or "none"
    return (
        f"FAILED_PRECONDITION: the agent of {node_label} does not enforce "
        f"{', '.join(missing)}, which its sandbox policy needs (it reported: {reported}); "
        "upgrade the agent on that node (`cortexctl agent` reports them), or change the "
        "policy with `cortexctl nodes sandbox`"
    )


def _pins_for(policy: EffectivePolicy, command: str) -> list[str]:
    return [format_pin(p) for p in policy.allowed_prefixes if p[0] == command]


def task_violation(
    policy: EffectivePolicy,
    argv: Sequence[str],
    script: str,
    env: Mapping[str, str] | None = None,
) -> str | None:
    """Why the policy forbids this task, or None when it may run."""
    if policy.mode == PERMISSIVE:
        return None
    if script:
        return (
            "scripts need PERMISSIVE sandbox mode and this node is STRICT; run an argv "
            "task or `cortexctl nodes sandbox NODE --permissive`"
        )
    refused = sorted(name for name in env or {} if name not in policy.allowed_env)
    if refused:
        allowed = ", ".join(policy.allowed_env) or "none"
        return (
            f"environment variable(s) {', '.join(refused)} not allowed on this STRICT node "
            f"(allowed: {allowed}); drop them from the task, or allow a name that does not "
            f"change how programs behave with `cortexctl nodes sandbox NODE --allow-env NAME`"
        )
    command = argv[0] if argv else ""
    if command in policy.allowed_commands and "/" not in command:
        return None
    if any(tuple(argv[: len(pin)]) == tuple(pin) for pin in policy.allowed_prefixes):
        return None
    pins = _pins_for(policy, command)
    if pins:
        return (
            f"argv {format_pin(argv)!r} does not start with an allowed prefix for {command!r} "
            f"on this STRICT node (allowed: {', '.join(repr(p) for p in pins)}); "
            f"add one with `cortexctl nodes sandbox NODE --allow '{command} ARGS'`"
        )
    allowed = ", ".join([*policy.allowed_commands, *map(format_pin, policy.allowed_prefixes)])
    return (
        f"command {command!r} is not allowed on this STRICT node (allowed: {allowed or 'nothing'});"
        f" add it with `cortexctl nodes sandbox NODE --allow {shlex.quote(command)}` (see its "
        "warnings), or pin its arguments: `--allow 'CMD ARGS'`"
    )


# --------------------------------------------------------------------------- warnings

_RISKY_ENV_EXACT = {
    "BASH_ENV": "bash sources this file before any bash script runs",
    "ENV": "sh and bash in POSIX mode source this file at start",
    "SHELLOPTS": "changes how every bash script behaves",
    "BASHOPTS": "changes how every bash script behaves",
    "IFS": "changes how shell scripts split words",
    "PS4": "is expanded (running commands) by shell scripts under xtrace",
    "PROMPT_COMMAND": "is run by interactive bash",
    "CDPATH": "changes where shell scripts' cd goes",
    "GLOBIGNORE": "changes shell globbing",
    "PATH": "decides which program every command name runs",
    "HOME": "points tools at their per-user config files (.gitconfig, .bashrc, ...)",
    "SHELL": "is the shell tools start for subcommands",
    "PAGER": "is a command git, man and others run",
    "MANPAGER": "is a command man runs",
    "EDITOR": "is a command many tools run",
    "VISUAL": "is a command many tools run",
    "BROWSER": "is a command some tools run",
    "NODE_OPTIONS": "injects options (--require) into every node process",
    "NODE_PATH": "changes where node loads modules from",
    "RUBYOPT": "injects options (-r) into every ruby process",
    "RUBYLIB": "changes where ruby loads code from",
    "JAVA_TOOL_OPTIONS": "injects options (-javaagent) into every JVM",
    "_JAVA_OPTIONS": "injects options into every JVM",
    "JDK_JAVA_OPTIONS": "injects options into the java launcher",
    "CLASSPATH": "changes where Java loads classes from",
    "GLIBC_TUNABLES": "changes the C library's behaviour in every program",
    "GCONV_PATH": "makes the C library load code for character conversion",
    "LOCPATH": "makes the C library load locale files from elsewhere",
    "HOSTALIASES": "changes name resolution",
    "LUA_INIT": "is run by every lua interpreter",
    "LUA_PATH": "changes where lua loads code from",
    "PHPRC": "points php at another php.ini (auto_prepend_file)",
    "TCLLIBPATH": "changes where tcl loads code from",
    "ZDOTDIR": "points zsh at other startup files",
    "SSH_ASKPASS": "is a program ssh runs",
    "SUDO_ASKPASS": "is a program sudo runs",
    "OPENSSL_CONF": "makes OpenSSL load a config file (and engines)",
    "MAKEFLAGS": "changes what make runs",
    "TAR_OPTIONS": "injects options (--to-command) into tar",
    "GZIP": "injects options into gzip",
    "XZ_DEFAULTS": "injects options into xz",
    "GREP_OPTIONS": "injects options into grep",
    "TMPDIR": "moves where tools write temporary files",
}
_RISKY_ENV_PREFIXES = (
    ("BASH_FUNC_", "is an exported bash function: any bash script (ldd, which, ...) runs it"),
    ("LD_", "changes how every program is loaded (LD_PRELOAD, LD_LIBRARY_PATH)"),
    ("DYLD_", "changes how every program is loaded"),
    ("GIT_", "configures git, including commands it runs (GIT_SSH_COMMAND, GIT_CONFIG_*)"),
    ("PYTHON", "changes what python runs (PYTHONSTARTUP, PYTHONPATH, PYTHONHOME)"),
    ("PERL5", "injects options or code into every perl process (PERL5OPT, PERL5LIB)"),
    ("PERL", "changes where perl loads code from"),
    ("LESS", "configures less, including preprocessor commands (LESSOPEN, LESSCLOSE)"),
    ("XDG_", "points tools at other config directories"),
    ("SSH_", "changes how ssh connects and what it runs"),
    ("NPM_CONFIG_", "configures npm, including scripts it runs"),
    ("PIP_", "configures pip, including where it installs from"),
    ("R_", "changes what R loads at start (R_PROFILE, R_LIBS)"),
)


def risky_env(name: str) -> str | None:
    """Why allowing this variable name lets a task change what a program does, or None."""
    if "%%" in name or name.startswith("BASH_FUNC_"):
        return f"{name} is an exported bash function: any bash script (ldd, which, ...) runs it"
    if name in _RISKY_ENV_EXACT:
        return f"{name} {_RISKY_ENV_EXACT[name]}"
    for prefix, why in _RISKY_ENV_PREFIXES:
        if name.startswith(prefix):
            return f"{name}: {prefix}* {why}"
    return None


# What a task can do with an allowed command. A task's stdin is /dev/null and it has no
# terminal, so tools that take commands only from a terminal or stdin (ed, more, most,
# nano) run none; each name below runs code given in its arguments, or in files it reads
# from the workspace (HOME is the workspace), or writes to any path it is given.
_SHELLS = "sh bash dash zsh ksh mksh csh tcsh fish ash busybox rbash pwsh"
_INTERPRETERS = (
    "python python2 python3 ipython ipython3 perl ruby node nodejs deno bun php lua luajit "
    "tclsh wish Rscript R julia java jshell osascript awk gawk mawk nawk bc dc m4 expect "
    "gdb lldb sqlite3 psql mysql"
)
_EXEC_WRAPPERS = (
    "env xargs nice nohup timeout time stdbuf setsid chroot sudo su doas runuser pkexec "
    "strace ltrace valgrind perf watch flock taskset ionice unshare nsenter parallel script "
    "chrt setpriv prlimit systemd-run capsh firejail bwrap tmux screen rlwrap"
)
_EXEC_TOOLS = (
    "find sed git ssh scp sftp rsync tar zip split sort rg socat nc ncat netcat gcc cc clang "
    "g++ ld vi vim nvim vimdiff view ex emacs less man pager mail mutt ftp tcpdump docker "
    "podman kubectl crontab at ldd openssl dpkg apt apt-get rpm yum dnf"
)
# How, for the tools whose way of running a program is not obvious from their name.
_EXEC_HOW = {
    "find": "-exec, -execdir and -ok run commands",
    "sed": "GNU sed's e command and the s///e flag run shell commands",
    "git": "-c, aliases, hooks and the repository's config (core.fsmonitor, ...) run commands",
    "ssh": "-o ProxyCommand and -o LocalCommand run local commands",
    "scp": "-S and -o ProxyCommand run programs",
    "sftp": "-S and -o ProxyCommand run programs",
    "rsync": "-e runs a program (the remote shell)",
    "tar": "--to-command, --use-compress-program (-I) and --checkpoint-action run programs",
    "zip": "-TT runs a command",
    "split": "--filter runs a shell command",
    "sort": "--compress-program runs a program (and -o writes any file)",
    "rg": "--pre runs a program on each file",
    "socat": "EXEC: and SYSTEM: addresses run commands",
    "nc": "-e and -c run a program (in the netcat variants that have them)",
    "ncat": "-e and -c run a program",
    "netcat": "-e and -c run a program (in the variants that have them)",
    "man": "-P and -H run a pager or browser",
    "less": "a lesskey file in HOME (the workspace) can set LESSOPEN, a command",
    "gcc": "-wrapper and -fplugin run other code",
    "cc": "-wrapper and -fplugin run other code",
    "clang": "-fplugin and -Xclang -load load other code",
    "g++": "-wrapper and -fplugin run other code",
    "tcpdump": "-z runs a command",
}
_PROJECT_TOOLS = (
    "make cmake ninja meson npm npx yarn pnpm pip pip3 uv uvx pipx poetry pdm hatch nox "
    "tox pytest cargo go mvn gradle"
)
_FILE_WRITERS = "cp mv tee dd install ln unzip patch curl wget"
_RISKY_COMMANDS = {
    **{name: "is a shell: it runs any command" for name in _SHELLS.split()},
    **{name: "runs any code given in its arguments" for name in _INTERPRETERS.split()},
    **{name: "runs the command given in its arguments" for name in _EXEC_WRAPPERS.split()},
    **{
        name: "can run other programs through its options or config" for name in _EXEC_TOOLS.split()
    },
    **{name: f"can run other programs: {how}" for name, how in _EXEC_HOW.items()},
    **{
        name: "runs the code of the project it is pointed at (build files, scripts, "
        "tests, setup hooks) or of the packages it installs"
        for name in _PROJECT_TOOLS.split()
    },
}
_VERSIONED = re.compile(r"^(python|perl|ruby|php|lua|node|pip)[0-9.]*$")
_CREDENTIAL_NOTE = (
    "without bubblewrap that includes the agent's own credential in its state dir; "
    "under bubblewrap (`agent --isolation bwrap`) only the workspace is writable"
)


def risky_command(command: str) -> str | None:
    """Why allowing this command lets a task run arbitrary code, or None if not known to.

    The lists are not complete: None means only that this command is not known to."""
    why = _RISKY_COMMANDS.get(command)
    if why is None and _VERSIONED.match(command):
        why = "runs any code given in its arguments"
    return f"{command} {why}" if why else None


def writes_any_file(command: str) -> bool:
    """Whether this command (not known to run code) writes to any path it is given."""
    return command in _FILE_WRITERS.split()


def allow_warnings(names: Sequence[str], pins: Sequence[Sequence[str]]) -> list[str]:
    """What an operator should know about an allow-list before relying on it."""
    warnings = []
    for name in names:
        why = risky_command(name)
        if why:
            warnings.append(
                f"allowing {name!r} with any arguments lets a task run arbitrary code: {why}. "
                f"Pin its arguments instead (`--allow '{name} SUBCOMMAND'`), and run the "
                "agent with bubblewrap (`agent --isolation bwrap`)"
            )
        elif writes_any_file(name):
            warnings.append(
                f"allowing {name!r} lets a task write any file the agent's user can: "
                f"{_CREDENTIAL_NOTE}"
            )
    for pin in pins:
        why = risky_command(pin[0])
        if why:
            warnings.append(
                f"pin {format_pin(pin)!r}: {why}. The pin fixes only the first arguments: "
                "the task still picks the ones after it (such as find's -exec or a file to "
                "write), and the tool still reads config from the workspace (.git/config, "
                "HOME/.gitconfig); safe only inside bubblewrap (`agent --isolation bwrap`), "
                "and without it a file written can be the agent's own credential"
            )
        elif writes_any_file(pin[0]):
            warnings.append(
                f"pin {format_pin(pin)!r}: the task still picks the paths after the pin, so "
                f"it can write any file the agent's user can: {_CREDENTIAL_NOTE}"
            )
    return warnings


def env_warnings(names: Sequence[str]) -> list[str]:
    """Warnings for allowed env names known to change how programs behave."""
    return [
        f"allowing {why}; a task that sets it can make allowed commands run other code"
        for why in filter(None, map(risky_env, names))
    ]
