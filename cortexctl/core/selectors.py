"""Label selectors, as kubectl has them: ``-l zone=eu,gpu,tier!=batch``.

A selector is a comma-separated list of requirements, all of which must hold:
``key=value`` (or ``key==value``), ``key!=value`` (also true when the key is absent),
``key`` (the key exists) and ``!key`` (it does not).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cortexctl.errors import InvalidArgument

_KEY = re.compile(r"[A-Za-z0-9._-]{1,63}")
OPS = ("=", "!=", "exists", "absent")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # one of OPS
    value: str = ""

    def matches(self, labels: Mapping[str, Any]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "absent":
            return not present
        equal = present and str(labels[self.key]) == self.value
        return equal if self.op == "=" else not equal

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "absent":
            return f"!{self.key}"
        return f"{self.key}{self.op}{self.value}"


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, Any] | None) -> bool:
        return all(req.matches(labels or {}) for req in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(req) for req in self.requirements)


def _key(text: str, whole: str) -> str:
    key = text.strip()
    if not _KEY.fullmatch(key):
        raise InvalidArgument(
            f"bad selector {whole!r}: label key {key!r} must be 1-63 of A-Z a-z 0-9 . _ - "
            "(e.g. -l zone=eu,gpu)"
        )
    return key


def parse_selector(text: str) -> Selector:
    """Parse ``key=value,key2!=value2,key3,!key4``; a usage error names what is wrong."""
    requirements = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            raise InvalidArgument(f"bad selector {text!r}: empty requirement (e.g. -l zone=eu,gpu)")
        if "!=" in part:
            key, _, value = part.partition("!=")
            requirements.append(Requirement(_key(key, text), "!=", value.strip()))
        elif "=" in part:
            key, _, value = part.partition("=")
            requirements.append(Requirement(_key(key, text), "=", value.lstrip("=").strip()))
        elif part.startswith("!"):
            requirements.append(Requirement(_key(part[1:], text), "absent"))
        else:
            requirements.append(Requirement(_key(part, text), "exists"))
    return Selector(tuple(requirements))


def check_target(node: object | None, selector: object | None) -> None:
    """Exactly one of a node or a selector (a usage error, before anything is looked up)."""
    if (node is None) == (selector is None):
        raise InvalidArgument("name one NODE, or give -l SELECTOR to fan out (not both)")
