"""TLS files checked before any connection or listener: each bad one named, with its flag,
in one line (the hub's `serve --tls-*`, the agent's `--ca-cert`/`--cert`/`--key`).

gRPC reads these files only when a handshake starts, and then reports a bad one as a
handshake failure far from its cause; stdlib ``ssl`` loads them the same way up front.
"""

from __future__ import annotations

import re
from pathlib import Path

from cortexctl.errors import InvalidArgument

PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----")
PEM_KEY = re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")


def _reason(err: Exception) -> str:
    return str(getattr(err, "reason", None) or err).lower().replace("_", " ")


def check_pem(flag: str, path: Path, *, key: bool = False) -> None:
    """``path`` can be read and holds a PEM certificate (or, with ``key``, a private key)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InvalidArgument(f"cannot read {flag} {path}: {err.strerror}") from None
    if not (PEM_KEY if key else PEM_CERT).search(data):
        what = "a PEM private key" if key else "a PEM certificate"
        raise InvalidArgument(f"bad {flag} {path}: it is not {what} (no BEGIN block)")


def check_key_pair(cert_flag: str, cert: Path, key_flag: str, key: Path, *, server: bool) -> None:
    """The certificate (chain) and its private key load together, as TLS will use them."""
    import ssl

    check_pem(cert_flag, cert)
    check_pem(key_flag, key, key=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as err:
        reason = _reason(err)
        if "key values mismatch" in reason:
            raise InvalidArgument(
                f"{key_flag} {key} is not the key of {cert_flag} {cert}"
            ) from None
        which = (
            f"{key_flag} {key}"
            if "key" in reason and "cert" not in reason
            else f"{cert_flag} {cert} / {key_flag} {key}"
        )
        raise InvalidArgument(
            f"bad TLS file {which}: {reason}; give a PEM certificate (chain) and its "
            "PEM private key"
        ) from None


def check_ca(flag: str, path: Path) -> None:
    """``path`` is a PEM CA bundle ssl can verify with."""
    import ssl

    check_pem(flag, path)
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as err:
        raise InvalidArgument(
            f"bad {flag} {path}: it is not a valid PEM CA certificate ({_reason(err)}); "
            "give the PEM certificate of the CA (bundle)"
        ) from None
