"""Protobuf <-> domain conversion, in one place."""

from __future__ import annotations

import time

from cortexctl.core import journal
from cortexctl.core.sandbox import PERMISSIVE, STRICT, EffectivePolicy
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.store.models import Task

MODE_TO_PB = {STRICT: pb.SANDBOX_MODE_STRICT, PERMISSIVE: pb.SANDBOX_MODE_PERMISSIVE}
STATE_TO_PB = {
    journal.PENDING: pb.PENDING,
    journal.DISPATCHED: pb.DISPATCHED,
    journal.RUNNING: pb.RUNNING,
    journal.SUCCEEDED: pb.SUCCEEDED,
    journal.FAILED: pb.FAILED,
    journal.CANCELLED: pb.CANCELLED,
    journal.TIMED_OUT: pb.TIMED_OUT,
    journal.REJECTED: pb.REJECTED,
}
PB_TO_STATE = {value: key for key, value in STATE_TO_PB.items()}


def policy_to_pb(policy: EffectivePolicy) -> pb.SandboxPolicy:
    return pb.SandboxPolicy(
        mode=MODE_TO_PB[policy.mode],
        allowed_commands=list(policy.allowed_commands),
        max_runtime_s=policy.max_runtime_s,
        max_output_bytes=policy.max_output_bytes,
        revision=policy.revision,
    )


def policy_message(policy: EffectivePolicy) -> pb.HubMessage:
    return pb.HubMessage(policy=policy_to_pb(policy))


def assignment(task: Task) -> pb.HubMessage:
    return pb.HubMessage(
        assign=pb.TaskAssignment(
            task_id=task.id,
            argv=list(task.argv or []),
            script=task.script,
            timeout_s=task.timeout_s,
            env=dict(task.env or {}),
            cwd=task.cwd,
        )
    )


def cancel(task_id: str, reason: str) -> pb.HubMessage:
    return pb.HubMessage(cancel=pb.CancelTask(task_id=task_id, reason=reason))


def heartbeat_ack(seq: int) -> pb.HubMessage:
    return pb.HubMessage(
        heartbeat_ack=pb.HeartbeatAck(seq=seq, hub_unix_ms=int(time.time() * 1000))
    )
