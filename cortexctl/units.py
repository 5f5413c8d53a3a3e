"""Parsing and formatting of durations (``30s``, ``10m``, ``1h30m``, ``7d``) and byte sizes."""

from __future__ import annotations

import re

from cortexctl.errors import InvalidArgument

DURATION_FORMAT = "a number and a unit (ms, s, m, h, d), or several: 30s, 10m, 12h, 7d, 1h30m"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+$")
_BARE_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
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
    """Return seconds for ``text`` such as ``"90s"``, ``"7d"`` or ``"1h30m"``.

    A typed number (a TOML number in the config file) is seconds; a bare number written
    as text is refused, since ``10`` could mean seconds or minutes.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise InvalidArgument(f"bad {what} {text!r}: must not be negative")
        return float(text)
    spelled = str(text).strip()
    if _BARE_NUMBER.match(spelled):
        raise InvalidArgument(
            f"bad {what} {spelled!r}: a bare number is ambiguous; give a unit, "
            f"e.g. {spelled}s or {spelled}m"
        )
    if not _DURATION.match(spelled):
        raise InvalidArgument(f"bad {what} {spelled!r}: expected {DURATION_FORMAT}")
    return sum(
        float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(spelled)
    )


def parse_bytes(text: str | int, *, what: str = "size") -> int:
    """Return bytes for ``text`` such as ``"64KiB"``; a bare number is bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise InvalidArgument(f"bad {what} {text!r}: must not be negative")
        return text
    match = _BYTES.match(str(text))
    if not match:
        raise InvalidArgument(f"bad {what} {text!r}: expected {BYTES_FORMAT}")
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


def format_size(size: int) -> str:
    """``10737418240`` -> ``10 GiB``; sizes as people write them in `nodes quota`."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"
