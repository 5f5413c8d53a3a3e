"""The agent's durable state: its node credential, kept in a 0600 file."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cortexctl.errors import UsageError

CREDENTIAL_FILE = "credential.json"


@dataclass(frozen=True)
class Membership:
    hub: str
    node_id: str
    node_credential: str
    hub_id: str = ""


def load_membership(state_dir: Path) -> Membership | None:
    path = state_dir / CREDENTIAL_FILE
    try:
        data = json.loads(path.read_text())
        return Membership(
            **{key: str(data[key]) for key in ("hub", "node_id", "node_credential")},
            hub_id=str(data.get("hub_id", "")),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(
            f"cannot read the agent credential {path}: {err}; remove it and join again with --token"
        ) from None


def save_membership(state_dir: Path, membership: Membership) -> Path:
    """Write the credential atomically, readable by this user only."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / CREDENTIAL_FILE
    tmp = state_dir / f".{CREDENTIAL_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(membership), handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path
