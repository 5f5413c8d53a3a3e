"""Names an agent lists in its handshake ``capabilities``: the policy features it enforces.

The hub sends a task whose policy needs a feature only to a node that reported it, so an
older or independent agent fails closed (FAILED_PRECONDITION), never open. The names are
part of the wire contract (see PROTOCOL.md): add new ones, never rename.
"""

from __future__ import annotations

TASKS = "tasks"  # runs tasks at all
SYNC = "sync"  # uploads files with SyncFile

POLICY_ENV = "policy.env"  # STRICT env deny-by-default with SandboxPolicy.allowed_env
POLICY_ARGV_PINS = "policy.argv_pins"  # SandboxPolicy.allowed_prefixes
POLICY_NETWORK = "policy.network"  # SandboxPolicy.deny_network
POLICY_RLIMITS = "policy.rlimits"  # SandboxPolicy.limits

# Every policy feature; a policy needs the ones core.sandbox.required_features names.
POLICY_FEATURES = (POLICY_ENV, POLICY_ARGV_PINS, POLICY_NETWORK, POLICY_RLIMITS)

RESULT_ACK = "result.ack"  # keeps terminal results until TaskUpdateAck
TASK_OUTPUT = "task.output"  # streams TaskOutput while a task runs

# What a hub of this version takes beyond the base protocol, listed in its handshake
# answer (``NodeConfiguration.hub_features``): an agent sends ``TaskOutput`` only to a hub
# that lists TASK_OUTPUT, so it still works with an older hub.
HUB_FEATURES = (TASK_OUTPUT,)

ISOLATION_PREFIX = "isolation."  # "isolation.bwrap" or "isolation.none"
ISOLATION_BWRAP = ISOLATION_PREFIX + "bwrap"
ISOLATION_NONE = ISOLATION_PREFIX + "none"


def isolation_of(capabilities: list[str] | tuple[str, ...]) -> str:
    """The isolation level a node reported ("bwrap", "none"), or "unknown"."""
    for name in capabilities:
        if name.startswith(ISOLATION_PREFIX):
            return name[len(ISOLATION_PREFIX) :]
    return "unknown"
