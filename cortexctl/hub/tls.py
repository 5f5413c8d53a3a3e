"""The hub's TLS files, checked before anything listens (the refusal to serve plaintext
off loopback is `addresses.check_transport`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from cortexctl.errors import InvalidArgument
from cortexctl.tlsfiles import check_ca, check_key_pair


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None

    @classmethod
    def from_options(
        cls, cert: Path | None, key: Path | None, client_ca: Path | None
    ) -> TlsFiles | None:
        if cert is None and key is None:
            if client_ca is not None:
                raise InvalidArgument("--tls-client-ca needs --tls-cert and --tls-key")
            return None
        if cert is None or key is None:
            raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
        files = cls(cert, key, client_ca)
        files.check()
        return files

    def check(self) -> None:
        """Load the files as TLS would, so a bad one is named before anything listens."""
        check_key_pair("--tls-cert", self.cert, "--tls-key", self.key, server=True)
        if self.client_ca is not None:
            check_ca("--tls-client-ca", self.client_ca)

    def server_credentials(self) -> grpc.ServerCredentials:
        self.check()

        def read(path: Path) -> bytes:
            try:
                return path.read_bytes()
            except OSError as err:
                raise InvalidArgument(f"cannot read {path}: {err.strerror}") from None

        return grpc.ssl_server_credentials(
            [(read(self.key), read(self.cert))],
            root_certificates=read(self.client_ca) if self.client_ca else None,
            require_client_auth=self.client_ca is not None,
        )
