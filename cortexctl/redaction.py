"""Secrets out of what is shown: a database URL's password. A leaf (standard library only)."""

from __future__ import annotations


def redact_url(url: str) -> str:
    """A URL with its password (user:PASSWORD@, or ?password=) shown as ***."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"  # unparsable: show nothing of it rather than a secret
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() == "password" for key, _ in pairs):
            query = urlencode(
                [(k, "***" if k.lower() == "password" else v) for k, v in pairs], safe="*"
            )
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing secret; urlunsplit would turn sqlite:/// into sqlite:/
    return urlunsplit(parts._replace(netloc=netloc, query=query))
