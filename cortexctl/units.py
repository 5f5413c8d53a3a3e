"""Parsing and formatting of durations (``30s``, ``10m``, ``12h``, ``7d``) and byte sizes."""

from __future__ import annotations

import re

from cortexctl.errors import UsageError

DURATION_FORMAT = "a number followed by s, m, h or d (e.g. 30s, 10m, 12h, 7d)"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

BYTES_FORMAT = "a whole number of bytes, optionally with KiB, MiB or GiB (e.g. 1048576, 64KiB)"
_BYTES = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB|K|M|G)?\s*$", re.I)
_BYTE_UNITS = {
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_duration(text: str | float | int, *, what: str = "duration") -> float:
    """Return seconds for ``text`` such as ``"90s"`` or ``"7d"``; a bare number is seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise UsageError(f"bad {what} {text!r}: must not be negative")
        return float(text)
    match = _DURATION.match(str(text))
    if not match:
        raise UsageError(f"bad {what} {text!r}: expected {DURATION_FORMAT}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def parse_bytes(text: str | int, *, what: str = "size") -> int:
    """Return bytes for ``text`` such as ``"64KiB"``; a bare number is bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise UsageError(f"bad {what} {text!r}: must not be negative")
        return text
    match = _BYTES.match(str(text))
    if not match:
        raise UsageError(f"bad {what} {text!r}: expected {BYTES_FORMAT}")
    return int(match.group(1)) * _BYTE_UNITS[(match.group(2) or "b").lower()]


def format_duration(seconds: float) -> str:
    """Render seconds compactly for people: ``45s``, ``12m``, ``3h``, ``2d``."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            value = seconds / size
            return (
                f"{value:.0f}{unit}" if value >= 10 or value == int(value) else f"{value:.1f}{unit}"
            )
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s".replace(".0s", "s")
