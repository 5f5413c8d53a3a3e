"""Connections the hub can afford: the open-file limit, the connection cap, shedding.

Every TCP connection costs the hub a file descriptor, and so do the store, the mirrors
and the logs. With the usual soft limit of 1,024, about a thousand idle connections used
to starve everything else (joins and uploads failed opening files). So at start the hub
raises its soft ``RLIMIT_NOFILE`` to the hard limit, caps incoming connections below it
(gRPC's ``grpc.max_allowed_incoming_connections``; past the cap the C core closes a new
connection at once), and lets gRPC close connections that never finish their handshake
or sit without a call. A watcher counts the sockets in use, so metrics and a
rate-limited log line say when the hub is shedding; connected nodes keep being served.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from dataclasses import dataclass

log = logging.getLogger("cortexctl.hub")

# Descriptors kept for the store, the mirrors, logs, metrics and the event loop: a fixed
# floor plus a tenth of the limit, plus two per store connection (SQLite: db + WAL).
FD_FLOOR = 128
FD_SHARE = 0.10
# Shedding is reported once the sockets in use reach this share of the cap.
SHEDDING_AT = 0.95
LOG_EVERY_S = 60.0


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        target = max(soft, 1_048_576) if soft != resource.RLIM_INFINITY else soft
    else:
        target = hard
    if soft != target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.info("raised the open-file limit from %d to %d (the hard limit)", soft, target)
            soft = target
        except (ValueError, OSError) as err:
            log.warning("could not raise the open-file limit from %d: %s", soft, err)
    return soft, hard


def fd_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1_048_576 if soft == resource.RLIM_INFINITY else int(soft)


def connection_cap(limit: int, store_connections: int, configured: int = 0) -> int:
    """Incoming connections allowed: ``configured`` if set, else what the fd limit leaves."""
    kept = FD_FLOOR + int(limit * FD_SHARE) + 2 * store_connections
    automatic = max(16, limit - kept)
    return min(configured, automatic) if configured else automatic


def count_sockets() -> int:
    """Sockets this process has open (a listdir and a readlink per descriptor)."""
    count = 0
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return -1
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


@dataclass
class ConnectionStats:
    """What the watcher saw, for metrics and `mesh status`; updated about once a second."""

    fd_limit: int
    cap: int
    sockets: int = 0
    shedding: bool = False
    shedding_checks: int = 0  # watcher runs that found the hub at its cap
    shedding_since: float | None = None
    _logged_at: float | None = None  # when the shedding line was last logged

    def observe(self, sockets: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.sockets = sockets
        at_cap = sockets >= 0 and sockets >= int(self.cap * SHEDDING_AT)
        if at_cap:
            self.shedding_checks += 1
            if not self.shedding:
                self.shedding_since = now
            if self._logged_at is None or now - self._logged_at >= LOG_EVERY_S:
                self._logged_at = now
                log.warning(
                    "shedding connections: %d sockets open, the cap is %d (hub.max_connections, "
                    "from the open-file limit %d); new connections are closed at once until "
                    "idle ones time out — connected nodes are still served",
                    sockets,
                    self.cap,
                    self.fd_limit,
                )
        elif self.shedding:
            log.info("no longer shedding connections: %d sockets open of %d", sockets, self.cap)
        self.shedding = at_cap
        if not at_cap:
            self.shedding_since = None
