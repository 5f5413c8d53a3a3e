"""Several hubs for one agent: `--hub a:50051,b:50051,c:50051`, or a DNS name with several
addresses. The agent dials one; when it loses it, it tries the next (with the runner's
jittered backoff). Each agent starts at a random one, so a fleet spreads over the hubs and
the nodes of a dead hub do not all land on the same survivor."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from cortexctl.addresses import split_address
from cortexctl.errors import InvalidArgument


def parse_hubs(text: str) -> list[str]:
    """The hub addresses of ``--hub`` (comma-separated HOST:PORT), each checked."""
    hubs = [item.strip() for item in text.split(",") if item.strip()]
    if not hubs:
        raise InvalidArgument("missing --hub HOST:PORT[,HOST:PORT...]: the hub(s) to join")
    for hub in hubs:
        split_address(hub)
    return list(dict.fromkeys(hubs))  # a repeated address is one hub


@dataclass(frozen=True)
class Endpoint:
    """One address to dial; ``name`` is the host name given (the one TLS checks)."""

    address: str  # HOST:PORT dialled (an IP when a name was resolved)
    name: str = ""  # the host name the address came from, "" when dialled as given

    def __str__(self) -> str:
        if not self.name:
            return self.address
        return f"{self.name}:{split_address(self.address)[1]} ({self.address})"


def resolve(hub: str) -> list[str]:
    """Every address of ``hub``'s host (IP literals and unresolvable names: as given)."""
    host, port = split_address(hub)
    bare = host.strip("[]")
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in bare else socket.AF_INET, bare)
        return [hub]  # already an address
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    except OSError:
        return [hub]  # no answer now: let gRPC try the name (and fail into the backoff)
    found = []
    for family, *_rest, sockaddr in infos:
        ip = str(sockaddr[0])
        found.append(f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}")
    return list(dict.fromkeys(found)) or [hub]


@dataclass
class HubRing:
    """The hubs an agent may use, in a ring it walks one step per lost connection."""

    hubs: list[str]
    resolver: Callable[[str], list[str]] = resolve
    rng: random.Random = field(default_factory=random.Random)
    _endpoints: list[Endpoint] = field(default_factory=list, init=False)
    _index: int = field(default=0, init=False)

    @classmethod
    def parse(cls, text: str, **kwargs: object) -> HubRing:
        return cls(parse_hubs(text), **kwargs)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        self._endpoints = self._expand()
        self._index = self.rng.randrange(len(self._endpoints))  # a fleet spreads out

    @property
    def several(self) -> bool:
        return len(self._endpoints) > 1

    @property
    def current(self) -> Endpoint:
        return self._endpoints[self._index]

    def advance(self) -> Endpoint:
        """The next endpoint after losing the current one (names are resolved again)."""
        current = self.current
        self._endpoints = self._expand()
        try:
            self._index = (self._endpoints.index(current) + 1) % len(self._endpoints)
        except ValueError:
            self._index = self.rng.randrange(len(self._endpoints))
        return self.current

    def _expand(self) -> list[Endpoint]:
        endpoints: list[Endpoint] = []
        for hub in self.hubs:
            addresses = self.resolver(hub)
            if len(addresses) <= 1:
                endpoints.append(Endpoint(hub))
                continue
            host = split_address(hub)[0].strip("[]")
            endpoints.extend(Endpoint(address, host) for address in addresses)
        return list(dict.fromkeys(endpoints))
