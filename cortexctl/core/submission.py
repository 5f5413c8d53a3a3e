"""`tasks submit` decided in one call: the shape checked once, the targets resolved (one
named node or every active node a selector matches), one task each, and which of them
wait for a node that is not connected. The CLI (and a future admin API) only renders it.

Its own module because it needs ``core.nodes``, which needs ``core.journal``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from sqlalchemy import delete
from sqlalchemy.orm import Session

from cortexctl.core import clock, journal, nodes
from cortexctl.core.presence import presence_of
from cortexctl.core.sandbox import SandboxDefaults
from cortexctl.core.selectors import Selector
from cortexctl.core.selectors import check_target as check_target
from cortexctl.core.views import Submission as Submission
from cortexctl.errors import Conflict, InvalidArgument


def submit(
    session: Session,
    *,
    node: str | None = None,
    selector: Selector | None = None,
    argv: Sequence[str] = (),
    script: str = "",
    timeout_s: float = 0,
    env: Mapping[str, str] | None = None,
    cwd: str = "",
    defaults: SandboxDefaults,
    expire_after_s: float | None = None,
) -> Submission:
    """Submit to one node (``node``: name, id or id prefix; a refusing node raises
    Conflict) or fan out to every active node ``selector`` matches (refusing ones are
    skipped). ``timeout_s`` is rounded up to whole seconds."""
    check_target(node, selector)
    task_env = dict(env or {})
    journal.check_task_shape(argv, script, task_env, cwd)
    if selector is not None:
        targets = nodes.select_nodes(session, selector, include_revoked=False)
        if not targets:
            raise InvalidArgument(
                f"no active node matches -l {selector}; see `cortexctl nodes list`"
            )
    else:
        targets = [nodes.resolve_node(session, node or "")]
    tasks = []
    for target in targets:
        try:
            task = journal.record_task(
                session,
                target,
                argv=argv,
                script=script,
                timeout_s=math.ceil(timeout_s),
                env=task_env,
                cwd=cwd,
                defaults=defaults,
                expire_after_s=expire_after_s,
            )
        except Conflict as err:  # cordoned or revoked: a fan-out skips it
            if selector is None:
                raise
            tasks.append(journal.Submitted("", "skipped", target.id, target.name, str(err)))
            continue
        tasks.append(journal.Submitted(task.id, task.state, target.id, target.name, task.error))
    online = {
        node_id
        for node_id, seen in presence_of(session, [t.id for t in targets]).items()
        if seen.status == "online"
    }
    waiting = tuple(
        task.node_name
        for task in tasks
        if task.id and task.state == journal.PENDING and task.node_id not in online
    )
    return Submission(tasks, selector, waiting)


REQUEST_ID_TTL_S = 86400.0  # a retry within a day of the first submit makes no new task


def gc_submit_requests(session: Session, *, older_than_s: float) -> int:
    """Forget request ids older than ``older_than_s`` (a retry after that makes a new task)."""
    from datetime import timedelta

    from cortexctl.store.engine import affected
    from cortexctl.store.models import SubmitRequest

    cutoff = clock.now() - timedelta(seconds=older_than_s)
    return affected(session.execute(delete(SubmitRequest).where(SubmitRequest.created_at < cutoff)))
