"""How the agent reaches its hub: TLS (optionally with a client certificate) or plaintext,
which is refused off loopback unless asked for with --insecure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from cortexctl.addresses import is_loopback, split_address
from cortexctl.errors import CortexError, InvalidArgument, from_grpc_status
from cortexctl.tlshints import CLIENT_CERT_REQUIRED as CLIENT_CERT_REQUIRED
from cortexctl.tlshints import NO_TLS as NO_TLS
from cortexctl.tlshints import SPEAKS_TLS as SPEAKS_TLS
from cortexctl.tlshints import closed_by_peer as closed_by_peer
from cortexctl.tlshints import closed_hint as closed_hint
from cortexctl.tlshints import probe_tls as probe_tls
from cortexctl.tlshints import tls_failure as tls_failure

CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # The agent's own jittered backoff decides when to reconnect; gRPC's subchannel backoff
    # (growing to 120 s by default) would otherwise stack on top of it and leave a node away
    # from a hub that came back.
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


# What the agent does with a status the hub answers (a call or a stream ending), decided
# here once. Retried, reconnecting with exponential backoff and jitter:
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,  # hub down, restarting, shutting down, or its store busy
        grpc.StatusCode.DEADLINE_EXCEEDED,  # the handshake's deadline passed: try later
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # rate-limited or overloaded: the backoff is the cure
        grpc.StatusCode.ABORTED,  # superseded by a newer stream, or a concurrent change
        grpc.StatusCode.CANCELLED,  # the call was cut (a proxy, a hub going away)
        grpc.StatusCode.INTERNAL,  # a hub bug or a broken frame: a long-running agent outlives it
        grpc.StatusCode.UNKNOWN,  # the same, from a hub or proxy that names no status
    }
)
# Everything else ends the agent with the matching typed error: UNAUTHENTICATED (a wrong
# or rotated credential), PERMISSION_DENIED (revoked), INVALID_ARGUMENT (this agent sent
# something the hub refuses), UNIMPLEMENTED and FAILED_PRECONDITION (an incompatible hub),
# NOT_FOUND, ALREADY_EXISTS, OUT_OF_RANGE, DATA_LOSS: retrying would only repeat them.


def retryable(err: grpc.aio.AioRpcError) -> bool:
    return err.code() in RETRYABLE


def rpc_error(err: grpc.aio.AioRpcError) -> CortexError:
    """The typed error for a status the hub answered (never a guess at another status)."""
    return from_grpc_status(err.code().name, f"hub answered {err.code().name}: {err.details()}")


@dataclass(frozen=True)
class Transport:
    ca_cert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False

    def check(self, hub: str) -> None:
        """Refuse unsafe or incomplete settings before any connection is tried.

        ``hub`` may name several hubs (``a:50051,b:50051``): each is checked.
        """
        from cortexctl.agent.failover import parse_hubs

        for one in parse_hubs(hub):
            self._check_one(one)
        self.check_files()

    def check_files(self) -> None:
        """Load the TLS files as the handshake will, so a bad one is named at start (gRPC
        would report it later as a handshake the hub refused)."""
        from cortexctl.tlsfiles import check_ca, check_key_pair

        if self.ca_cert is not None:
            check_ca("--ca-cert", self.ca_cert)
        if self.cert is not None and self.key is not None:
            check_key_pair("--cert", self.cert, "--key", self.key, server=False)

    def _check_one(self, hub: str) -> None:
        host, _ = split_address(hub)
        if (self.cert is None) != (self.key is None):
            raise InvalidArgument("a client certificate needs both --cert and --key")
        if self.cert is not None and self.ca_cert is None:
            raise InvalidArgument("--cert/--key need --ca-cert (the CA that signed the hub)")
        if self.ca_cert is None and not self.insecure and not is_loopback(host):
            raise InvalidArgument(
                f"refusing plaintext to non-loopback hub {hub}; pass --ca-cert "
                "FILE for TLS, or --insecure if a trusted network is meant"
            )

    def channel(self, hub: str, name: str = "") -> grpc.aio.Channel:
        """A channel to ``hub``; ``name`` is the host name TLS checks when ``hub`` is one
        of the addresses that name resolved to."""
        if self.ca_cert is None:
            return grpc.aio.insecure_channel(hub, options=CHANNEL_OPTIONS)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_cert),
            private_key=_read(self.key) if self.key else None,
            certificate_chain=_read(self.cert) if self.cert else None,
        )
        options: list[tuple[str, str | int]] = list(CHANNEL_OPTIONS)
        if name:
            options.append(("grpc.ssl_target_name_override", name))
        return grpc.aio.secure_channel(hub, credentials, options=options)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise InvalidArgument(f"cannot read {path}: {err.strerror}") from None


# A hub whose fresh connections fail this many times before this agent ever got through
# is probed (`probe_tls`, on every address of its name): only a TLS mismatch is then
# fatal, so an agent behind a load balancer with no hub up yet (which accepts and closes
# too), or started before its hub, keeps retrying.
CLOSED_BEFORE_JOIN_LIMIT = 2
