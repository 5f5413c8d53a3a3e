"""Trusted labels (an invite's or an operator's) and the labels a node reports about itself.

A node that joins with `agent --label gpu=yes` says something about itself; nothing checks
it. Such labels are kept apart (``Node.self_labels``) and never override a trusted one, so
an operator's selector that changes a sandbox or revokes nodes can rely on the labels it
matches — and matches a self-reported label only when asked to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from cortexctl.store.models import Node

Origin = Literal["trusted", "self-reported"]
TRUSTED: Origin = "trusted"
SELF_REPORTED: Origin = "self-reported"


@dataclass(frozen=True)
class NodeLabels:
    trusted: dict[str, str]  # from the invite or an operator
    reported: dict[str, str]  # from the node itself

    @property
    def effective(self) -> dict[str, str]:
        """Every label, a trusted value winning over a self-reported one of the same key."""
        return {**self.reported, **self.trusted}

    def origin(self, key: str) -> Origin | None:
        if key in self.trusted:
            return TRUSTED
        if key in self.reported:
            return SELF_REPORTED
        return None

    def value(self, key: str, *, include_self_reported: bool) -> str | None:
        """The label's value a selector may match: a self-reported one only when asked."""
        if key in self.trusted:
            return self.trusted[key]
        return self.reported.get(key) if include_self_reported else None

    def matches(self, wanted: dict[str, str], *, include_self_reported: bool) -> bool:
        """True if every KEY=VALUE in ``wanted`` holds (selectors: all must match)."""
        return all(
            self.value(key, include_self_reported=include_self_reported) == value
            for key, value in wanted.items()
        )


def _strings(labels: dict[str, Any] | None) -> dict[str, str]:
    return {str(key): str(value) for key, value in (labels or {}).items()}


def node_labels(node: Node) -> NodeLabels:
    """A node's labels split by who set them."""
    return NodeLabels(trusted=_strings(node.labels), reported=_strings(node.self_labels))


def is_trusted(node: Node, key: str) -> bool:
    """True if ``key`` is a label the invite or an operator gave ``node``."""
    return node_labels(node).origin(key) == TRUSTED
