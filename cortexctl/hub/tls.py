"""The hub's TLS files, checked before anything listens (the refusal to serve plaintext
off loopback is `addresses.check_transport`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import grpc

from cortexctl.errors import InvalidArgument

PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----")
PEM_KEY = re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")


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
        import ssl

        for flag, path in (
            ("--tls-cert", self.cert),
            ("--tls-key", self.key),
            ("--tls-client-ca", self.client_ca),
        ):
            if path is None:
                continue
            try:
                data = path.read_bytes()
            except OSError as err:
                raise InvalidArgument(f"cannot read {flag} {path}: {err.strerror}") from None
            wanted = PEM_KEY if flag == "--tls-key" else PEM_CERT
            if not wanted.search(data):
                what = "a PEM private key" if flag == "--tls-key" else "a PEM certificate"
                raise InvalidArgument(f"bad {flag} {path}: it is not {what} (no BEGIN block)")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as err:
            reason = str(err.reason or err).lower().replace("_", " ")
            if "key values mismatch" in reason:
                raise InvalidArgument(
                    f"--tls-key {self.key} is not the key of --tls-cert {self.cert}"
                ) from None
            which = (
                f"--tls-key {self.key}"
                if "key" in reason and "cert" not in reason
                else f"--tls-cert {self.cert} / --tls-key {self.key}"
            )
            raise InvalidArgument(
                f"bad TLS file {which}: {reason}; give a PEM certificate (chain) and its "
                "PEM private key"
            ) from None
        if self.client_ca is not None:
            try:
                context.load_verify_locations(cafile=str(self.client_ca))
            except ssl.SSLError as err:
                raise InvalidArgument(
                    f"bad --tls-client-ca {self.client_ca}: "
                    f"{str(err.reason or err).lower().replace('_', ' ')}; give a PEM CA bundle"
                ) from None

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
