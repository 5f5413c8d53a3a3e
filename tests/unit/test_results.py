"""fit_output: a task result's stdout+stderr bounded together to the hub's message limit."""

from __future__ import annotations

import pytest

from cortexctl.agent.results import fit_output
from cortexctl.proto import mesh_pb2 as pb


@pytest.mark.parametrize(
    ("out", "err", "limit"),
    [(700_000, 700_000, 1_114_112), (10, 2_000_000, 1_114_112), (0, 0, 20_000), (5, 5, 0)],
)
def test_fit_output_keeps_the_whole_update_within_the_limit(out: int, err: int, limit: int) -> None:
    fitted = fit_output("tk_0123456789abcdef", b"o" * out, b"e" * err, "boom " * 2000, limit)
    update = pb.NodeMessage(
        task_update=pb.TaskUpdate(
            task_id="tk_0123456789abcdef",
            state=pb.SUCCEEDED,
            exit_code=-2_000_000_000,
            stdout=fitted.stdout,
            stderr=fitted.stderr,
            output_truncated=True,
            error=fitted.error,
        )
    )
    assert update.ByteSize() <= (limit or 1024 * 1024)
    if out + err <= 1000 and limit == 0:
        assert (fitted.stdout, fitted.stderr) == (b"o" * out, b"e" * err)
    if out == 10:
        assert fitted.stdout == b"o" * 10  # a small stream is kept whole
