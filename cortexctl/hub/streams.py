"""Live TaskStreams and node presence, in memory, keyed by node id.

An entry exists only while its stream is open: registering a newer stream for a node
supersedes (closes) the older one, and a closing stream removes itself only if it is
still the registered one. Presence is kept here as a dictionary update per heartbeat and
written to the store in batches by the presence-flush job.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from cortexctl.core import clock
from cortexctl.core.presence import PresenceUpdate
from cortexctl.proto import mesh_pb2 as pb


@dataclass(frozen=True)
class Close:
    """Put on a stream's outbox to end it; ``code`` None ends it with OK."""

    reason: str
    code: str | None = None  # grpc.StatusCode member name


@dataclass(eq=False)
class NodeStream:
    node_id: str
    node_name: str
    peer: str
    stream_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    outbox: asyncio.Queue[pb.HubMessage | Close] = field(default_factory=asyncio.Queue)
    in_flight: set[str] = field(default_factory=set)
    policy_revision_sent: int = 0
    closed: Close | None = None

    @property
    def label(self) -> str:
        return f"node {self.node_name} ({self.node_id})"

    def send(self, message: pb.HubMessage) -> None:
        if self.closed is None:
            self.outbox.put_nowait(message)

    def close(self, reason: str, code: str | None = None) -> None:
        """Ask the stream to end; the first reason given wins."""
        if self.closed is None:
            self.closed = Close(reason, code)
            self.outbox.put_nowait(self.closed)


class StreamRegistry:
    def __init__(self, hub_id: str, heartbeat_interval_s: float) -> None:
        self.hub_id = hub_id
        self.heartbeat_interval_s = heartbeat_interval_s
        self._streams: dict[str, NodeStream] = {}
        self._presence: dict[str, tuple[str, PresenceUpdate]] = {}  # node -> (stream id, state)
        self._dirty: set[str] = set()
        self.heartbeats = 0

    def __len__(self) -> int:
        return len(self._streams)

    def streams(self) -> list[NodeStream]:
        return list(self._streams.values())

    def get(self, node_id: str) -> NodeStream | None:
        return self._streams.get(node_id)

    def register(self, stream: NodeStream) -> NodeStream | None:
        """Make ``stream`` the node's stream; return the one it supersedes, if any."""
        old = self._streams.get(stream.node_id)
        self._streams[stream.node_id] = stream
        self._presence[stream.node_id] = (
            stream.stream_id,
            PresenceUpdate(
                node_id=stream.node_id,
                hub_id=self.hub_id,
                connected_at=clock.now(),
                peer=stream.peer,
                heartbeat_interval_s=self.heartbeat_interval_s,
            ),
        )
        self._dirty.add(stream.node_id)
        return old

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
