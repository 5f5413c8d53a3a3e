"""How the agent reaches its hub: TLS (optionally with a client certificate) or plaintext,
which is refused off loopback unless asked for with --insecure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from cortexctl.addresses import is_loopback, split_address
from cortexctl.errors import UsageError

CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


@dataclass(frozen=True)
class Transport:
    ca_cert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False

    def check(self, hub: str) -> None:
        """Refuse unsafe or incomplete settings before any connection is tried."""
        host, _ = split_address(hub)
        if (self.cert is None) != (self.key is None):
            raise UsageError("a client certificate needs both --cert and --key")
        if self.cert is not None and self.ca_cert is None:
            raise UsageError("--cert/--key need --ca-cert (the CA that signed the hub)")
        if self.ca_cert is None and not self.insecure and not is_loopback(host):
            raise UsageError(
                f"refusing plaintext to non-loopback hub {hub}; pass --ca-cert "
                "FILE for TLS, or --insecure if a trusted network is meant"
            )

    def channel(self, hub: str) -> grpc.aio.Channel:
        if self.ca_cert is None:
            return grpc.aio.insecure_channel(hub, options=CHANNEL_OPTIONS)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_cert),
            private_key=_read(self.key) if self.key else None,
            certificate_chain=_read(self.cert) if self.cert else None,
        )
        return grpc.aio.secure_channel(hub, credentials, options=CHANNEL_OPTIONS)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}") from None
