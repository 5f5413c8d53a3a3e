"""Task results that fit the hub's receive limit.

A terminal ``TaskUpdate`` carries stdout and stderr whole (each within the policy's output
cap), but together they can exceed what the hub accepts in one message — and an
oversized message ends the whole stream, losing the result and killing the node's other
tasks. So the agent bounds the two streams *together* to the limit the hub announces in
``NodeConfiguration.max_message_bytes``, keeping the head of each and marking the result
``output_truncated``.
"""

from __future__ import annotations

from dataclasses import dataclass

# If the hub announces no limit (an older hub), assume the smallest one it had.
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
# Room for the fields besides the output: tags, lengths, state, exit code, the oneof
# wrapper — a few dozen bytes in practice; generous so that no encoding detail can tip
# a message over.
HEADROOM_BYTES = 4096
MAX_ERROR_BYTES = 4096


@dataclass(frozen=True)
class FittedOutput:
    stdout: bytes
    stderr: bytes
    error: str
    truncated: bool  # something was cut here (the caller ORs in the executor's own flag)


def _share(first: int, second: int, budget: int) -> tuple[int, int]:
    """How many bytes of each stream to keep: a small stream keeps all, a big one the rest."""
    if first + second <= budget:
        return first, second
    half = budget // 2
    if first <= half:
        return first, budget - first
    if second <= half:
        return budget - second, second
    return half, budget - half


def fit_output(
    task_id: str,
    stdout: bytes,
    stderr: bytes,
    error: str,
    max_message_bytes: int,
    *,
    headroom: int = HEADROOM_BYTES,
) -> FittedOutput:
    """Cut stdout+stderr (and a long error) so the whole TaskUpdate fits the hub's limit."""
    limit = max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES
    encoded = error.encode("utf-8", "replace")
    cut = False
    if len(encoded) > MAX_ERROR_BYTES:
        error = encoded[:MAX_ERROR_BYTES].decode("utf-8", "ignore")
        encoded = error.encode("utf-8")
        cut = True
    budget = max(0, limit - headroom - len(task_id.encode("utf-8", "replace")) - len(encoded))
    keep_out, keep_err = _share(len(stdout), len(stderr), budget)
    if keep_out < len(stdout) or keep_err < len(stderr):
        cut = True
    return FittedOutput(stdout[:keep_out], stderr[:keep_err], error, cut)
