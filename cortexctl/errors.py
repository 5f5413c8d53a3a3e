"""Typed errors raised by core; each edge maps them once (exit code, gRPC status).

The exit codes are ``EXIT_CODES`` below, the one table: the CLI exits with
``err.exit_code``, the man pages' EXIT STATUS is rendered from it and a test checks the
README's table against it. Each error class names the gRPC status it becomes at the hub's
edge (the interceptor) and, through ``from_grpc_status``, the error a gRPC client (the
agent) raises for a status it receives. One name per meaning: no synonyms. Exit 6
(refused) is what the agent ends with when the hub does not accept its node; the systemd
unit's RestartPreventExitStatus= names it, so a revoked agent is not restarted in a loop.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExitCode:
    code: int
    name: str
    meaning: str  # the README's wording (tests/cli/test_cli_errors.py compares them)


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4
EXIT_CONFLICT = 5
EXIT_REFUSED = 6
EXIT_INTERRUPTED = 130

EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(EXIT_OK, "ok", "ok (also: an admin task that found nothing to do)"),
    ExitCode(
        EXIT_FAILED,
        "failed",
        "failed (e.g. a task that did not succeed, a task rejected by the sandbox, "
        "a file that could not be written)",
    ),
    ExitCode(
        EXIT_USAGE,
        "usage",
        "usage: a bad option, argument, duration, label or value, or a bad config file",
    ),
    ExitCode(EXIT_NOT_FOUND, "not found", "not found: no such node, task, invite or setting"),
    ExitCode(
        EXIT_UNAVAILABLE,
        "unavailable",
        "unavailable: the store (or hub) cannot be reached or is busy, or there is no store",
    ),
    ExitCode(
        EXIT_CONFLICT,
        "conflict",
        "conflict: the change collides with the current state (e.g. cancelling an ended task)",
    ),
    ExitCode(
        EXIT_REFUSED,
        "refused",
        "refused: the hub does not accept this node (revoked, unknown, token used up); "
        "the agent stops",
    ),
    ExitCode(EXIT_INTERRUPTED, "interrupted", "interrupted (Ctrl-C)"),
)

# Documented exceptions to the table: codes one command defines for itself and documents
# beside it (in its --help and the README). `tasks wait` and `tasks submit --wait` exit with
# the task's own code when it ran to an exit, else with one of 120-125 below (cli/tasks.py);
# `mesh status --check` exits 0/1/2/3 like a nagios plugin (CHECK_* below).
COMMAND_EXIT_CODES = range(120, 126)

# `tasks submit --wait` / `tasks wait`: the task did not run to an exit of its own.
EXIT_WAIT_TIMED_OUT = 120  # --timeout passed; the task is left as it is
EXIT_TASK_TIMED_OUT = 121  # the task hit its runtime limit on the node
EXIT_TASK_REJECTED = 122  # the node's sandbox policy refused it
EXIT_TASK_CANCELLED = 123
EXIT_TASK_EXPIRED = 124  # queued past its expiry, never dispatched
EXIT_TASK_LOST = 125  # failed without an exit code (node lost, revoked...) or a CLI error

# `mesh status --check`, as nagios plugins exit.
CHECK_OK = 0
CHECK_WARNING = 1
CHECK_CRITICAL = 2  # also: no store where the settings point
CHECK_UNKNOWN = 3  # the store could not be read (unreachable, busy, not allowed)

# The meanings of the codes above, the one table for them: the README's table of 120-125
# (a test compares), the man pages' EXIT STATUS (tools/manpages.py) and JSON errors' "code".
WAIT_EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(
        EXIT_WAIT_TIMED_OUT,
        "wait timed out",
        "the wait timed out (`--wait-timeout`, `tasks wait --timeout`, `nodes drain "
        "--timeout`); the task or node is left as it is",
    ),
    ExitCode(EXIT_TASK_TIMED_OUT, "task timed out", "the task timed out on its node"),
    ExitCode(
        EXIT_TASK_REJECTED, "task rejected", "the task was rejected by the node's sandbox policy"
    ),
    ExitCode(EXIT_TASK_CANCELLED, "task cancelled", "the task was cancelled"),
    ExitCode(EXIT_TASK_EXPIRED, "task expired", "the task expired before any node took it"),
    ExitCode(
        EXIT_TASK_LOST,
        "task lost",
        "the task failed without an exit code (node lost or revoked), or the CLI's own error",
    ),
)
CHECK_EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(CHECK_OK, "ok", "ok: no threshold reached"),
    ExitCode(CHECK_WARNING, "warning", "warning: a --warn-* threshold reached"),
    ExitCode(
        CHECK_CRITICAL,
        "critical",
        "critical: a --crit-* threshold reached, fewer live hubs than --min-hubs, or no store",
    ),
    ExitCode(CHECK_UNKNOWN, "unknown", "unknown: the store could not be read"),
)


@dataclass(frozen=True)
class CommandExits:
    """Exit codes one command defines for itself, shown before the table in its man page."""

    command: str  # "tasks wait": the command path without the program's name
    preamble: str
    codes: tuple[ExitCode, ...]
    otherwise: str  # what the table below is for


_OWN_CODE = (
    "the task's own exit code when it ran to an exit (killed by signal N: 128+N), as ssh "
    "and docker run do; a fan-out (-l) the highest of its tasks'; otherwise one of these "
    "(the CLI's own errors during the wait are 125):"
)
COMMAND_EXITS: tuple[CommandExits, ...] = (
    CommandExits(
        "tasks submit",
        f"With --wait: {_OWN_CODE}",
        WAIT_EXIT_CODES,
        "Without --wait, and for a bad option or target (even with --wait):",
    ),
    CommandExits(
        "tasks wait",
        _OWN_CODE[0].upper() + _OWN_CODE[1:],
        WAIT_EXIT_CODES,
        "A bad option (2) and Ctrl-C (130), as in the table:",
    ),
    CommandExits("nodes drain", "With --timeout:", WAIT_EXIT_CODES[:1], "Otherwise:"),
    CommandExits(
        "mesh status",
        "With --check, one line and a code, as a nagios plugin:",
        CHECK_EXIT_CODES,
        "Without --check, and for a bad option:",
    ),
)


def exit_name(code: int) -> str:
    """The "code" of a JSON error on stderr: the table's name, never renamed (120-125:
    the wait's own names, e.g. "wait_timed_out")."""
    for entry in (*EXIT_CODES, *WAIT_EXIT_CODES):
        if entry.code == code:
            return entry.name.replace(" ", "_")
    return "failed" if code else "ok"


class CortexError(Exception):
    """Base of every error a person can act on; ``str(err)`` is the message."""

    exit_code = EXIT_FAILED
    grpc_status = "INTERNAL"  # name of a grpc.StatusCode member


class InvalidArgument(CortexError):
    """A bad option, value or request: the caller must change what it asks."""

    exit_code = EXIT_USAGE
    grpc_status = "INVALID_ARGUMENT"


class NotFound(CortexError):
    exit_code = EXIT_NOT_FOUND
    grpc_status = "NOT_FOUND"


class Unavailable(CortexError):
    """The store or the hub cannot be reached, is busy, or answered past the deadline."""

    exit_code = EXIT_UNAVAILABLE
    grpc_status = "UNAVAILABLE"


class Fenced(Unavailable):
    """This hub lost its place as a member (another hub took over its epoch): it may move
    no task until it has stopped serving, cancelled its work and rejoined.

    ``epoch`` is the one the refused call held (None: not known). A call that was under way
    while the hub fenced and rejoined fails with its old epoch: that is the takeover the
    hub already answered, not a new one."""

    def __init__(self, message: str, *, epoch: int | None = None) -> None:
        super().__init__(message)
        self.epoch = epoch


class Conflict(CortexError):
    """The change collides with the current state or a concurrent change; retry may help."""

    exit_code = EXIT_CONFLICT
    grpc_status = "ABORTED"


class AlreadyExists(CortexError):
    """A name (or other unique thing) another holder already has."""

    exit_code = EXIT_CONFLICT
    grpc_status = "ALREADY_EXISTS"


class Unauthenticated(CortexError):
    exit_code = EXIT_REFUSED
    grpc_status = "UNAUTHENTICATED"


class PermissionDenied(CortexError):
    exit_code = EXIT_REFUSED
    grpc_status = "PERMISSION_DENIED"


class ResourceExhausted(CortexError):
    grpc_status = "RESOURCE_EXHAUSTED"


class DataLoss(CortexError):
    grpc_status = "DATA_LOSS"


class ConfigError(CortexError):
    """A bad config file or setting (a usage error the hub never sends a peer)."""

    exit_code = EXIT_USAGE


# Each class's own status read backwards, so the two directions cannot disagree.
_FROM_GRPC: dict[str, type[CortexError]] = {
    cls.grpc_status: cls
    for cls in (
        InvalidArgument,
        NotFound,
        Unavailable,
        Conflict,
        AlreadyExists,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        DataLoss,
    )
}
_FROM_GRPC["DEADLINE_EXCEEDED"] = Unavailable  # the peer did not answer in time: same remedy


def from_grpc_status(status: str, message: str) -> CortexError:
    """The typed error for a gRPC status (by member name) a peer answered with.

    Statuses without a class of their own (INTERNAL, UNKNOWN, UNIMPLEMENTED, ...) are plain
    failures; none is mistaken for another.
    """
    return _FROM_GRPC.get(status, CortexError)(message)


class WaitEnded(CortexError):
    """A wait that ends without the task's own exit code; carries one of 120-125."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class StoreFull(Unavailable):
    """The store's disk is full (SQLite's "database or disk is full"): nothing was written."""


class StoreMissing(Unavailable):
    """A command that only reads found no store where the settings point (never creates one)."""
