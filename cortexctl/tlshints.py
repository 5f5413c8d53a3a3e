"""What a TLS failure to a hub means, in words: the agent and the remote CLI say the same.

gRPC reports a TLS mismatch as a bare UNAVAILABLE; its details (or a probe of what the
hub speaks) tell a wrong CA, a name the certificate does not carry, a plaintext hub, or a
hub that wants a client certificate apart, each with what to pass instead.
"""

from __future__ import annotations

from typing import Any, Protocol

from cortexctl.addresses import split_address


class HasTls(Protocol):
    """The TLS settings of a connection (the agent's Transport, a CLI context)."""

    @property
    def ca_cert(self) -> Any: ...

    @property
    def cert(self) -> Any: ...


_CERT_PROBLEMS = (
    "CERTIFICATE_VERIFY_FAILED",
    "certificate signature failure",
    "BAD_SIGNATURE",
    "unable to get local issuer certificate",
    "self signed certificate",
    "self-signed certificate",
    "certificate has expired",
)
_NOT_TLS = ("WRONG_VERSION_NUMBER", "packet length too long", "http request", "record overflow")

SPEAKS_TLS = "tls"
CLIENT_CERT_REQUIRED = "client-cert-required"
NO_TLS = "no-tls"


def closed_by_peer(details: str) -> bool:
    return "Socket closed" in (details or "")


def tls_failure(transport: HasTls, hub: str, code: str, details: str) -> str | None:
    """A hint when gRPC's own error text shows a TLS mismatch that retrying cannot fix."""
    text = details or ""
    if code != "UNAVAILABLE" or transport.ca_cert is None:
        return None
    if "Peer name" in text or "hostname mismatch" in text.lower():
        return (
            f"the certificate of hub {hub} does not carry the name {hub.rsplit(':', 1)[0]!r}; "
            "connect with the name (or IP) the certificate was made for"
        )
    if any(marker in text for marker in _CERT_PROBLEMS):
        return (
            f"the certificate of hub {hub} is not signed by --ca-cert {transport.ca_cert} "
            "(wrong CA, or an expired certificate); give the CA bundle that signed "
            "the hub's certificate"
        )
    if any(marker in text for marker in _NOT_TLS) or (
        "handshake failed" in text.lower() and "alert" not in text.lower()
    ):
        return (
            f"hub {hub} does not answer TLS: it may serve plaintext; drop --ca-cert "
            "(loopback or --insecure), or start the hub with --tls-cert/--tls-key"
        )
    return None


def probe_tls(hub: str, timeout_s: float = 3.0) -> str:
    """What a hub that closed our connections speaks: TLS, TLS wanting a client
    certificate, or neither (nothing listening behind a proxy, a crashed hub...). Blocking."""
    import socket
    import ssl

    host, port = split_address(hub)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only asking what it speaks; nothing is sent
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            # Under TLS 1.3 a server checks the client certificate after the handshake: one
            # that wants it closes at once (with or without an alert). One that does not
            # waits for the HTTP/2 preface, or sends its own settings.
            tls.settimeout(min(timeout_s, 1.0))
            try:
                first = tls.recv(1)
            except ssl.SSLError as err:
                first = b"" if "CERTIFICATE_REQUIRED" in str(err).upper() else b"?"
            except TimeoutError:
                first = b"?"
            except OSError:
                first = b""
            return CLIENT_CERT_REQUIRED if first == b"" else SPEAKS_TLS
    except ssl.SSLError as err:
        text = str(err).upper()
        if "CERTIFICATE_REQUIRED" in text or "HANDSHAKE_FAILURE" in text:
            return CLIENT_CERT_REQUIRED  # TLS 1.2 refuses the handshake itself
        return NO_TLS
    except OSError:
        return NO_TLS


def closed_hint(transport: HasTls, hub: str, spoken: str) -> str | None:
    """The hint for a hub that keeps closing connections, given what ``probe_tls`` found."""
    if spoken == NO_TLS:
        return None  # not a TLS mismatch: keep retrying
    if transport.ca_cert is None:
        return (
            f"hub {hub} closes plaintext connections: it serves TLS; pass --ca-cert FILE "
            "(the CA that signed its certificate)"
        )
    if spoken != CLIENT_CERT_REQUIRED:
        return None
    if transport.cert is None:
        return (
            f"hub {hub} closes the TLS handshake: it requires a client certificate "
            "(mTLS); pass --cert FILE and --key FILE signed by the CA it trusts"
        )
    return (
        f"hub {hub} closes the TLS handshake: it does not accept the client certificate "
        f"{transport.cert}; use one signed by the CA the hub trusts (--tls-client-ca)"
    )
