"""Limits on failed handshakes, keyed by what is being guessed, with bounded memory.

A failure is counted against the *target* of the guess — the invite id, or the node id
of a credential — once per source address and once across all sources:

- per (target, source): ``max_failures`` per window. Guesses from an address never
  lock out a different node behind the same address (NAT, a load balancer): its own
  invite or credential is another key.
- per target, all sources: ten times that, so many addresses cannot share out the
  guessing of one invite or credential.
- tokens that do not even parse have no target: they share one hub-wide budget (fifty
  times ``max_failures``), so garbage is cheap to refuse and never fills the table.

A credential the hub has already verified (it is in the credential cache) is never held
back: a node is not locked out by others guessing at its id. Entries live in one LRU
table, capped at ``max_keys`` and swept once their window has passed.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from cortexctl.core.secrets import INVITE_PREFIX, NODE_PREFIX, split_token
from cortexctl.errors import ResourceExhausted

TARGET_FACTOR = 10
MALFORMED_FACTOR = 50
MALFORMED = "malformed"


def peer_host(peer: str) -> str:
    """``ipv4:127.0.0.1:5555`` -> ``ipv4:127.0.0.1``; ``ipv6:[::1]:5555`` -> ``ipv6:[::1]``."""
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() else peer


def guess_target(invite_token: str = "", credential: str = "") -> str:
    """What a handshake tries to open: ``invite:<id>``, ``node:<id>``, or MALFORMED."""
    if invite_token:
        parts = split_token(INVITE_PREFIX, invite_token)
        return f"invite:{parts[0][:64]}" if parts else MALFORMED
    parts = split_token(NODE_PREFIX, credential)
    return f"node:{parts[0][:64]}" if parts else MALFORMED


def _describe(target: str) -> str:
    kind, _, ident = target.partition(":")
    if kind == "invite":
        return f"invite {ident}"
    if kind == "node":
        return f"the credential of node {ident}"
    return "malformed tokens"


class FailureLimiter:
    def __init__(
        self, max_failures: int = 20, window_s: float = 60.0, max_keys: int = 10_000
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()  # key -> (start, n)
        self.refused = 0  # handshakes refused by a limit, for metrics

    def __len__(self) -> int:
        return len(self._windows)

    def _keys(self, peer: str, target: str) -> list[tuple[str, int]]:
        """(key, limit) pairs a failure of ``target`` from ``peer`` counts against."""
        if target == MALFORMED:
            return [(MALFORMED, self.max_failures * MALFORMED_FACTOR)]
        return [
            (f"{target}|{peer_host(peer)}", self.max_failures),
            (target, self.max_failures * TARGET_FACTOR),
        ]

    def check(self, peer: str, target: str) -> None:
        """RESOURCE_EXHAUSTED if ``target`` used up its failures in the current window."""
        if self.max_failures <= 0:
            return
        now = time.monotonic()
        for key, limit in self._keys(peer, target):
            entry = self._windows.get(key)
            if entry is None:
                continue
            started, failures = entry
            elapsed = now - started
            if elapsed >= self.window_s:
                del self._windows[key]
                continue
            if failures >= limit:
                self.refused += 1
                source = "" if "|" not in key else f" from {peer_host(peer)}"
                raise ResourceExhausted(
                    f"too many failed handshakes for {_describe(target)}{source} "
                    f"({failures} in {self.window_s:g}s); retry in "
                    f"{max(1, round(self.window_s - elapsed))}s"
                )

    def failed(self, peer: str, target: str) -> None:
        if self.max_failures <= 0:
            return
        now = time.monotonic()
        for key, _ in self._keys(peer, target):
            started, failures = self._windows.pop(key, (now, 0))
            if now - started >= self.window_s:
                started, failures = now, 0
            self._windows[key] = (started, failures + 1)
        while len(self._windows) > self.max_keys:
            self._windows.popitem(last=False)

    def sweep(self) -> int:
        """Forget windows that have passed; return how many."""
        cutoff = time.monotonic() - self.window_s
        stale = [key for key, (started, _) in self._windows.items() if started <= cutoff]
        for key in stale:
            del self._windows[key]
        return len(stale)
