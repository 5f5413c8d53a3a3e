"""Protobuf <-> domain conversion, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cortexctl.core import clock, journal
from cortexctl.core.features import HUB_FEATURES
from cortexctl.core.nodes import Handshake, HandshakeRequest
from cortexctl.core.sandbox import PERMISSIVE, STRICT, EffectivePolicy
from cortexctl.core.views import Assignment
from cortexctl.proto import mesh_pb2 as pb

if TYPE_CHECKING:
    from cortexctl.hub.runtime import HubOptions

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
    journal.EXPIRED: pb.EXPIRED,
}
PB_TO_STATE = {value: key for key, value in STATE_TO_PB.items()}


def policy_to_pb(policy: EffectivePolicy) -> pb.SandboxPolicy:
    return pb.SandboxPolicy(
        mode=MODE_TO_PB[policy.mode],
        allowed_commands=list(policy.allowed_commands),
        max_runtime_s=policy.max_runtime_s,
        max_output_bytes=policy.max_output_bytes,
        revision=policy.revision,
        allowed_env=list(policy.allowed_env),
        allowed_prefixes=[pb.ArgvPrefix(argv=list(pin)) for pin in policy.allowed_prefixes],
        deny_network=policy.deny_network,
        limits=pb.TaskLimits(
            cpu_seconds=policy.limits.cpu_seconds,
            address_space_bytes=policy.limits.address_space_bytes,
            processes=policy.limits.processes,
            file_size_bytes=policy.limits.file_size_bytes,
            open_files=policy.limits.open_files,
        ),
    )


def policy_message(policy: EffectivePolicy) -> pb.HubMessage:
    return pb.HubMessage(policy=policy_to_pb(policy))


def assignment(task: Assignment) -> pb.HubMessage:
    return pb.HubMessage(
        assign=pb.TaskAssignment(
            task_id=task.task_id,
            argv=task.argv,
            script=task.script,
            timeout_s=task.timeout_s,
            env=task.env,
            cwd=task.cwd,
        )
    )


def cancel(task_id: str, reason: str) -> pb.HubMessage:
    return pb.HubMessage(cancel=pb.CancelTask(task_id=task_id, reason=reason))


def heartbeat_ack(seq: int) -> pb.HubMessage:
    return pb.HubMessage(heartbeat_ack=pb.HeartbeatAck(seq=seq, hub_unix_ms=clock.unix_ms()))


def update_ack(update: pb.TaskUpdate, outcome: journal.UpdateOutcome) -> pb.HubMessage:
    """The answer to a terminal result, sent only once the journal holds it (or refused it)."""
    return pb.HubMessage(
        task_update_ack=pb.TaskUpdateAck(
            task_id=update.task_id,
            state=STATE_TO_PB.get(outcome.state, update.state),
            accepted=outcome.accepted,
            reason=outcome.reason,
        )
    )


def handshake_request(request: pb.SyncConfigurationRequest, peer: str) -> HandshakeRequest:
    return HandshakeRequest(
        invite_token=request.invite_token,
        node_credential=request.node_credential,
        hostname=request.hostname,
        requested_name=request.requested_name,
        agent_version=request.agent_version,
        labels=dict(request.labels),
        capabilities=tuple(request.capabilities),
        source=peer,
    )


def node_configuration(done: Handshake, opts: HubOptions) -> pb.NodeConfiguration:
    return pb.NodeConfiguration(
        node_id=done.node_id,
        node_name=done.name,
        node_credential=done.credential,
        sandbox=policy_to_pb(done.policy),
        heartbeat_interval_ms=int(opts.heartbeat_interval_s * 1000),
        lost_node_grace_ms=int(opts.lost_node_grace_s * 1000),
        max_chunk_bytes=opts.max_chunk_bytes,
        max_file_bytes=opts.max_file_bytes,
        hub_id=opts.hub_id,
        max_message_bytes=opts.max_message_bytes,
        hub_features=HUB_FEATURES,
    )
