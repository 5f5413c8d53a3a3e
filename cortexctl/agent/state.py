"""The agent's durable state, in files readable by its user only (0600, in a 0700 folder):
the node credential (with the hub it joined, so --hub need not be given again) and the
record of what `agent sync` has uploaded (size, mtime and sha256 per file).

The state dir must be this user's and writable by no one else (another user who could
write there could swap the credential, or plant a symlink the agent would write through);
the credential is written to a fresh temporary name (O_EXCL, O_NOFOLLOW) and renamed into
place, and read without following a symlink. One agent per state dir: a second one finds
the lock file held and refuses.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from cortexctl.errors import Conflict, InvalidArgument

CREDENTIAL_FILE = "credential.json"
SYNC_RECORD_FILE = "sync-record.json"
LOCK_FILE = "agent.lock"


@dataclass(frozen=True)
class Membership:
    hub: str
    node_id: str
    node_credential: str
    hub_id: str = ""
    node_name: str = ""  # as the hub decided it; "" in files written by older agents

    @property
    def label(self) -> str:
        return f"{self.node_name} ({self.node_id})" if self.node_name else self.node_id


def check_state_dir(state_dir: Path, *, create: bool = True) -> Path:
    """Create the state dir (0700) if missing; refuse one that is not ours or is writable
    by others (exit 2, with what to do)."""
    if create and not state_dir.exists():
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(state_dir, 0o700)  # whatever the umask
    try:
        info = os.stat(state_dir)
    except FileNotFoundError:
        return state_dir
    if not stat.S_ISDIR(info.st_mode):
        raise InvalidArgument(f"state dir {state_dir} is not a folder; give --state-dir DIR")
    if info.st_uid != os.geteuid():
        raise InvalidArgument(
            f"refusing state dir {state_dir}: it belongs to uid {info.st_uid}, not to this "
            f"user (uid {os.geteuid()}); give --state-dir a folder of your own"
        )
    if info.st_mode & 0o022:
        raise InvalidArgument(
            f"refusing state dir {state_dir}: it is writable by "
            f"{'others' if info.st_mode & 0o002 else 'its group'} "
            f"(mode {stat.S_IMODE(info.st_mode):04o}), so they could replace the node "
            f"credential; run `chmod 700 {state_dir}`"
        )
    return state_dir


def load_membership(state_dir: Path) -> Membership | None:
    path = state_dir / CREDENTIAL_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InvalidArgument(
                f"refusing the agent credential {path}: it is a symlink; remove it and "
                "join again (`cortexctl agent --rejoin --token-file FILE`)"
            ) from None
        raise InvalidArgument(f"cannot read the agent credential {path}: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise InvalidArgument(
                f"refusing the agent credential {path}: not a regular file of this user"
            )
        with os.fdopen(fd, "r") as handle:
            fd = -1
            data = json.load(handle)
        return Membership(
            **{key: str(data[key]) for key in ("hub", "node_id", "node_credential")},
            hub_id=str(data.get("hub_id", "")),
            node_name=str(data.get("node_name", "")),
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InvalidArgument(
            f"cannot read the agent credential {path}: {err}; remove it and join again "
            "with --rejoin --token-file FILE"
        ) from None
    finally:
        if fd >= 0:
            os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable: without it a crash can lose the new name."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_private(state_dir: Path, name: str, data: object) -> Path:
    """Write JSON atomically, readable by this user only, never through a link.

    The temporary name is fresh and opened with O_EXCL|O_NOFOLLOW (nothing planted there is
    written through); rename replaces whatever is at the final name, a symlink included,
    without following it.
    """
    check_state_dir(state_dir)
    path = state_dir / name
    tmp = state_dir / f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(state_dir)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def save_membership(state_dir: Path, membership: Membership) -> Path:
    """Write the credential atomically, readable by this user only."""
    return _write_private(state_dir, CREDENTIAL_FILE, asdict(membership))


def remembered_hub(state_dir: Path) -> str:
    """The hub this agent last joined or reached ("" when it never did)."""
    membership = load_membership(state_dir)
    return membership.hub if membership is not None else ""


@dataclass(frozen=True)
class SyncedFile:
    size: int
    mtime_ns: int
    sha256: str


@dataclass
class SyncRecord:
    """What `agent sync` knows the hub holds: per workspace path, as it was when sent.

    Tied to one node on one hub: another node id or hub id means another mirror.
    """

    node_id: str
    hub_id: str
    files: dict[str, SyncedFile]


def load_sync_record(state_dir: Path, node_id: str, hub_id: str) -> SyncRecord:
    """The record for this node and hub; an empty one if missing, foreign or unreadable."""
    empty = SyncRecord(node_id, hub_id, {})
    try:
        data = json.loads((state_dir / SYNC_RECORD_FILE).read_text())
        if data.get("node_id") != node_id or data.get("hub_id") != hub_id:
            return empty
        files = {
            str(rel): SyncedFile(int(size), int(mtime_ns), str(digest))
            for rel, (size, mtime_ns, digest) in data.get("files", {}).items()
        }
    except (OSError, ValueError, TypeError, AttributeError):
        return empty  # only an optimisation: a lost record means sending again
    return SyncRecord(node_id, hub_id, files)


def save_sync_record(state_dir: Path, record: SyncRecord) -> Path:
    return _write_private(
        state_dir,
        SYNC_RECORD_FILE,
        {
            "node_id": record.node_id,
            "hub_id": record.hub_id,
            "files": {
                rel: [item.size, item.mtime_ns, item.sha256]
                for rel, item in sorted(record.files.items())
            },
        },
    )


class StateLock:
    """An flock on ``<state dir>/agent.lock`` for the agent's lifetime: one agent per dir."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> StateLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise Conflict(
                f"another agent (pid {holder}) is running with state dir "
                f"{self.path.parent}; stop it first, or give this one its own --state-dir "
                "to run a second node"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
