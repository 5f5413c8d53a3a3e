"""Live TaskStreams and node presence, in memory, keyed by node id.

An entry exists only while its stream is open: registering a newer stream for a node
supersedes (closes) the older one, and a closing stream removes itself only if it is
still the registered one. "Newer" is the generation the stream claimed in the node's
presence row when it opened (``core.presence.claim_stream``), so it holds across hubs: a
stream superseded by one on another hub is closed by ``superseded`` (told by NOTIFY, the
presence flush or the reconciler's pass), with ABORTED and a reason naming that hub.
Presence is kept here as a dictionary update per heartbeat and written to the store in
batches by the presence-flush job.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from cortexctl.core import clock
from cortexctl.core.presence import PresenceUpdate
from cortexctl.errors import Conflict, CortexError
from cortexctl.proto import mesh_pb2 as pb

# How long (and how many) notes of nodes that moved away are kept for a stream of theirs
# still opening here: the window between a claim and its register is a store round trip.
MOVED_AWAY_S = 60.0
MOVED_AWAY_MAX = 4096


@dataclass(frozen=True)
class Close:
    """Put on a stream's outbox to end it: with OK when ``error`` is None, else with the
    typed error's status (mapped once, by the stream runtime, from the interceptor's table).
    """

    reason: str
    error: CortexError | None = None


@dataclass(eq=False)
class NodeStream:
    node_id: str
    node_name: str
    peer: str
    stream_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    gen: int = 0  # claimed in the presence row when the stream opened (0: not claimed)
    outbox: asyncio.Queue[pb.HubMessage | Close] = field(default_factory=asyncio.Queue)
    in_flight: set[str] = field(default_factory=set)
    policy_revision_sent: int = 0
    closed: Close | None = None
    last_heard: float = field(default_factory=time.monotonic)  # any message from the node
    journal_in_flight: bool = True  # the journal held tasks of the node in flight at open
    reported_held: bool = False  # the first heartbeat (the tasks the node holds) was seen

    @property
    def label(self) -> str:
        return f"node {self.node_name} ({self.node_id})"

    def send(self, message: pb.HubMessage) -> bool:
        """Queue ``message``; False if the stream is closing and it will never be sent."""
        if self.closed is None:
            self.outbox.put_nowait(message)
            return True
        return False

    def close(self, reason: str, error: type[CortexError] | None = None) -> None:
        """Ask the stream to end, with OK or as ``error``; the first reason given wins."""
        if self.closed is None:
            self.closed = Close(reason, None if error is None else error(reason))
            self.outbox.put_nowait(self.closed)


class StreamRegistry:
    def __init__(self, hub_id: str, heartbeat_interval_s: float) -> None:
        self.hub_id = hub_id
        self.heartbeat_interval_s = heartbeat_interval_s
        self._streams: dict[str, NodeStream] = {}
        self._presence: dict[str, tuple[str, PresenceUpdate]] = {}  # node -> (stream id, state)
        self._dirty: set[str] = set()
        # node -> (generation, hub) of a stream that opened elsewhere while this hub held
        # one; a stream of an older generation registering after the note is closed at once.
        self._moved_away: dict[str, tuple[int, str, float]] = {}
        self.heartbeats = 0
        self.superseded_elsewhere = 0  # streams closed for a newer one on another hub

    def __len__(self) -> int:
        return len(self._streams)

    def streams(self) -> list[NodeStream]:
        return list(self._streams.values())

    def get(self, node_id: str) -> NodeStream | None:
        return self._streams.get(node_id)

    def register(self, stream: NodeStream) -> NodeStream | None:
        """Make ``stream`` the node's stream unless a newer one is known; return the stream
        that loses (the older registered one, or ``stream`` itself), already closed."""
        old = self._streams.get(stream.node_id)
        moved = self._moved_away.pop(stream.node_id, None)
        if moved is not None and moved[0] > stream.gen:
            self._close_superseded(stream, moved[1], moved[0])
            return stream
        if old is not None and old.gen > stream.gen:
            stream.close(
                f"superseded by a newer stream of {stream.label} from {old.peer}", Conflict
            )
            return stream
        self._streams[stream.node_id] = stream
        self._presence[stream.node_id] = (
            stream.stream_id,
            PresenceUpdate(
                node_id=stream.node_id,
                hub_id=self.hub_id,
                connected_at=clock.now(),
                peer=stream.peer,
                heartbeat_interval_s=self.heartbeat_interval_s,
                stream_id=stream.stream_id,
                stream_gen=stream.gen,
            ),
        )
        self._dirty.add(stream.node_id)
        if old is not None:
            old.close(f"superseded by a newer stream from {stream.peer}", Conflict)
        return old

    def superseded(self, node_id: str, gen: int, hub_id: str) -> NodeStream | None:
        """A stream of generation ``gen`` opened for the node on ``hub_id``: close this
        hub's older stream of it, if any (returned), and remember it for a late register."""
        if hub_id == self.hub_id:
            return None  # this hub's own streams supersede each other in ``register``
        stream = self._streams.get(node_id)
        if stream is not None and stream.gen >= gen:
            return None  # the node came back here since
        # Kept also when a stream is closed now: one of its generations may still be
        # between its claim and its register.
        self._remember_moved(node_id, gen, hub_id)
        if stream is None:
            return None
        self._close_superseded(stream, hub_id, gen)
        return stream

    def _close_superseded(self, stream: NodeStream, hub_id: str, gen: int) -> None:
        if stream.closed is None:
            self.superseded_elsewhere += 1
        stream.close(
            f"superseded by a newer stream of {stream.label} on hub {hub_id} "
            f"(stream generation {gen} > {stream.gen})",
            Conflict,
        )

    def _remember_moved(self, node_id: str, gen: int, hub_id: str) -> None:
        now = time.monotonic()
        if len(self._moved_away) >= MOVED_AWAY_MAX:
            for key, (_, _, at) in list(self._moved_away.items()):
                if now - at > MOVED_AWAY_S:
                    del self._moved_away[key]
            if len(self._moved_away) >= MOVED_AWAY_MAX:
                self._moved_away.clear()
        self._moved_away[node_id] = (gen, hub_id, now)

    def unregister(self, stream: NodeStream) -> bool:
        """Forget ``stream``; True if it was the node's current stream."""
        if self._streams.get(stream.node_id) is not stream:
            return False
        del self._streams[stream.node_id]
        entry = self._presence.get(stream.node_id)
        if entry and entry[0] == stream.stream_id:
            entry[1].disconnected_at = clock.now()
            self._dirty.add(stream.node_id)
        return True

    def heartbeat(self, stream: NodeStream, running_tasks: int) -> None:
        self.heartbeats += 1
        entry = self._presence.get(stream.node_id)
        if entry and entry[0] == stream.stream_id:
            entry[1].last_heartbeat = clock.now()
            entry[1].running_tasks = running_tasks
            self._dirty.add(stream.node_id)

    def policy_acked(self, stream: NodeStream, revision: int) -> None:
        entry = self._presence.get(stream.node_id)
        if entry and entry[0] == stream.stream_id:
            entry[1].policy_revision_acked = revision
            self._dirty.add(stream.node_id)

    def take_presence(self) -> list[PresenceUpdate]:
        """Copies of changed presence for one flush; disconnected entries leave memory."""
        batch = []
        for node_id in self._dirty:
            entry = self._presence.get(node_id)
            if entry is None:
                continue
            batch.append(dataclasses.replace(entry[1]))
            if entry[1].disconnected_at is not None:
                del self._presence[node_id]
        self._dirty.clear()
        return batch

    def restore_presence(self, batch: list[PresenceUpdate]) -> None:
        """Put back a batch whose flush failed, unless newer state replaced it."""
        for update in batch:
            if (
                update.node_id not in self._presence
                and update.disconnected_at is not None
                and update.node_id not in self._streams
            ):
                self._presence[update.node_id] = ("", update)
            self._dirty.add(update.node_id)

    def last_heartbeat(self, node_id: str) -> datetime | None:
        entry = self._presence.get(node_id)
        return entry[1].last_heartbeat if entry else None
