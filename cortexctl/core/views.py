"""Turning core views into JSON-ready values: the one definition of the --json contract."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from cortexctl.core import clock


def to_jsonable(value: Any) -> Any:
    """Dataclasses to dicts (field names are the stable keys), datetimes to ISO 8601 UTC."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_jsonable(getattr(value, field.name))
            for field in dataclasses.fields(value)
        }
    if isinstance(value, datetime):
        return clock.iso(value)
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
