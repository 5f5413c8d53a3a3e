"""Sandbox policy: a node's own, or the hub default, which is STRICT unless configured."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cortexctl.errors import InvalidArgument
from cortexctl.store.models import Node

STRICT = "strict"
PERMISSIVE = "permissive"
MODES = (STRICT, PERMISSIVE)


@dataclass(frozen=True)
class SandboxDefaults:
    """Hub-wide defaults, from settings."""

    mode: str = STRICT
    allowed_commands: tuple[str, ...] = ()
    max_runtime_s: int = 3600
    max_output_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class EffectivePolicy:
    mode: str
    allowed_commands: tuple[str, ...]
    max_runtime_s: int
    max_output_bytes: int
    revision: int
    configured: bool  # False when the node has no mode of its own and runs on the default


def effective_policy(node: Node, defaults: SandboxDefaults) -> EffectivePolicy:
    allowed = node.allowed_commands
    return EffectivePolicy(
        mode=node.sandbox_mode or defaults.mode,
        allowed_commands=tuple(allowed) if allowed is not None else defaults.allowed_commands,
        max_runtime_s=defaults.max_runtime_s,
        max_output_bytes=defaults.max_output_bytes,
        revision=node.policy_revision,
        configured=node.sandbox_mode is not None,
    )


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InvalidArgument(f"bad sandbox mode {mode!r}: expected strict or permissive")
    return mode


def check_allowed_commands(commands: Sequence[str]) -> list[str]:
    """Allowed commands are bare executable names, resolved on the node's PATH."""
    for command in commands:
        if not command or "/" in command or command in (".", "..") or "\0" in command:
            raise InvalidArgument(
                f"bad allowed command {command!r}: give a bare executable "
                "name such as 'python3', not a path"
            )
    return sorted(set(commands))


def task_violation(policy: EffectivePolicy, argv: Sequence[str], script: str) -> str | None:
    """Why the policy forbids this task, or None when it may run."""
    if policy.mode == PERMISSIVE:
        return None
    if script:
        return (
            "scripts need PERMISSIVE sandbox mode and this node is STRICT; run an argv "
            "task or `cortexctl nodes sandbox NODE --permissive`"
        )
    command = argv[0] if argv else ""
    if command not in policy.allowed_commands:
        allowed = ", ".join(policy.allowed_commands) or "nothing"
        return (
            f"command {command!r} is not allowed on this STRICT node (allowed: {allowed}); "
            f"add it with `cortexctl nodes sandbox NODE --strict --allow {command}`"
        )
    return None
