"""Per-peer limit on failed authentication, with bounded memory.

Each peer address (port dropped) has a window counter of failures. Entries are kept in
LRU order, capped at ``max_peers`` (the oldest is forgotten first) and swept once their
window has passed — so a flood of addresses cannot grow the table without bound.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from cortexctl.errors import ResourceExhausted


def peer_host(peer: str) -> str:
    """``ipv4:127.0.0.1:5555`` -> ``ipv4:127.0.0.1``; ``ipv6:[::1]:5555`` -> ``ipv6:[::1]``."""
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


class FailureLimiter:
    def __init__(
        self, max_failures: int = 20, window_s: float = 60.0, max_peers: int = 10_000
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_peers = max_peers
        self._peers: OrderedDict[str, tuple[float, int]] = OrderedDict()  # host -> (start, n)

    def __len__(self) -> int:
        return len(self._peers)

    def check(self, peer: str) -> None:
        """RESOURCE_EXHAUSTED if ``peer`` used up its failures in the current window."""
        if self.max_failures <= 0:
            return
        host = peer_host(peer)
        entry = self._peers.get(host)
        if entry is None:
            return
        started, failures = entry
        elapsed = time.monotonic() - started
        if elapsed >= self.window_s:
            del self._peers[host]
            return
        if failures >= self.max_failures:
            raise ResourceExhausted(
                f"too many failed handshakes from {host} ({failures} in "
                f"{self.window_s:g}s); retry in {self.window_s - elapsed:.0f}s"
            )

    def failed(self, peer: str) -> None:
        if self.max_failures <= 0:
            return
        host = peer_host(peer)
        now = time.monotonic()
        started, failures = self._peers.pop(host, (now, 0))
        if now - started >= self.window_s:
            started, failures = now, 0
        self._peers[host] = (started, failures + 1)
        while len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)

    def sweep(self) -> int:
        """Forget peers whose window has passed; return how many."""
        cutoff = time.monotonic() - self.window_s
        stale = [host for host, (started, _) in self._peers.items() if started <= cutoff]
        for host in stale:
            del self._peers[host]
        return len(stale)
