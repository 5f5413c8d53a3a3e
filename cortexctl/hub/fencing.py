"""A hub another hub took over fences itself, then rejoins.

Taken over means: its lease lapsed (a freeze, a partition, a store it could not reach)
and a survivor failed its tasks, or another process registered under its id. It learns so
from its lease renewal or from any move of a task (``core.hubs.hold`` raises ``Fenced``).
Then, in order: it stops serving (health NOT_SERVING, handshakes and new streams refused
UNAVAILABLE, nothing claimed); it tells each node to cancel what it had dispatched there
(the journal already says FAILED: the work must stop) and closes its streams, so the nodes
move to a live hub; it drops the graces of its old streams (the survivor decided those
tasks); and it registers again with a new epoch before it serves again. A hub that merely
could not renew, with nobody in its place, never gets here: it keeps serving and retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from cortexctl.core import hubs
from cortexctl.errors import CortexError, Fenced, Unavailable
from cortexctl.hub import convert
from cortexctl.hub.runtime import HubRuntime

log = logging.getLogger("cortexctl.hub")
STREAMS_GONE_S = 5.0  # how long the fence waits for its streams to end before rejoining
REJOIN_RETRY_S = (0.5, 1.0, 2.0, 4.0)


class Fence:
    """Runs the fence once per takeover; ``trigger`` is safe to call from anywhere."""

    def __init__(
        self,
        rt: HubRuntime,
        set_serving: Callable[[bool], Awaitable[None]],
        address: Callable[[], str],
    ) -> None:
        self.rt = rt
        self.set_serving = set_serving
        self.address = address
        self._running: asyncio.Task[None] | None = None

    def trigger(self, err: Fenced) -> None:
        """Start the fence unless it is under way (or the hub is shutting down), or the
        call that found the hub fenced held an epoch older than the one the hub rejoined
        at (it was under way across the last fence: that takeover is answered)."""
        if self.rt.draining or (self._running is not None and not self._running.done()):
            return
        if err.epoch is not None and err.epoch < self.rt.epoch:
            log.info(
                "hub %s: a call of its old epoch %d was refused: %s", self.rt.hub_id, err.epoch, err
            )
            return
        self.rt.fenced = True  # at once: no claim, no new stream from here on
        self._running = self.rt.spawn(self._fence(str(err)), "fence")

    async def wait(self) -> None:
        if self._running is not None:
            await asyncio.wait([self._running])

    async def _fence(self, why: str) -> None:
        rt = self.rt
        old = rt.epoch
        log.error(
            "hub %s lost its membership (epoch %d): %s; it stops serving, cancels what it "
            "dispatched, closes its nodes' streams and rejoins",
            rt.hub_id,
            old,
            why,
        )
        rt.fences += 1
        await self.set_serving(False)
        reason = (
            f"hub {rt.hub_id} was taken over by another hub while its lease had lapsed "
            f"(epoch {old}); the task was failed there, so it stops here"
        )
        cancelled = 0
        for stream in rt.streams.streams():
            for task_id in sorted(stream.in_flight):
                stream.send(convert.cancel(task_id, reason))
                cancelled += 1
            stream.in_flight.clear()
            # After the cancels on the same stream, so the node reads them first.
            stream.close(
                f"hub {rt.hub_id} was taken over by another hub and is rejoining; "
                "reconnect (to any hub)",
                Unavailable,
            )
        rt.cancel_graces()  # the survivor failed what those graces would have
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STREAMS_GONE_S
        while len(rt.streams) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        epoch = await self._rejoin()
        if epoch is None:
            return  # shutting down
        rt.epoch = epoch
        rt.fenced = False
        await self.set_serving(True)
        log.warning(
            "hub %s rejoined the store with epoch %d (was %d); cancelled %d task(s) it had "
            "dispatched under the old epoch",
            rt.hub_id,
            epoch,
            old,
            cancelled,
        )

    async def _rejoin(self) -> int | None:
        rt = self.rt
        attempt = 0
        while not rt.draining:
            try:
                epoch: int = await rt.executor.session(
                    hubs.register_hub,
                    rt.hub_id,
                    self.address(),
                    rt.options.lease_s,
                    write=True,
                    timeout=10.0,
                )
                return epoch
            except CortexError as err:
                delay = REJOIN_RETRY_S[min(attempt, len(REJOIN_RETRY_S) - 1)]
                attempt += 1
                log.warning("hub %s could not rejoin yet (%s); retrying", rt.hub_id, err)
                await asyncio.sleep(delay)
        return None
