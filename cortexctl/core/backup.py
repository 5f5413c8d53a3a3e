"""`db backup`: a consistent copy of a SQLite store while the hub keeps running.

SQLite's online backup API copies page by page under the database's own locking, so the
copy is a valid database even with a hub writing. PostgreSQL has pg_dump for that; this
says how instead of doing it half as well.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from sqlalchemy.engine import make_url

from cortexctl.errors import Conflict, InvalidArgument, NotFound

PAGES_PER_STEP = 1024  # copy in steps, so a writer is never locked out for the whole copy


@dataclass(frozen=True)
class Backup:
    path: str
    size_bytes: int
    store_path: str  # the SQLite file backed up

    legacy_keys: ClassVar[dict[str, str]] = {"bytes": "size_bytes", "source": "store_path"}


def pg_dump_hint(url: str) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    target = parsed.render_as_string(hide_password=True)
    return (
        "the store is PostgreSQL; back it up with pg_dump, e.g. "
        f"`pg_dump --format=custom --file cortex.dump '{target}'` "
        "(restore with pg_restore into an empty database, then `cortexctl db upgrade`)"
    )


def backup_store(url: str, dest: Path, *, force: bool = False) -> Backup:
    """Copy the SQLite store at ``url`` into ``dest`` atomically (a temp file, then rename)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        raise InvalidArgument(pg_dump_hint(url))
    source_path = Path(parsed.database or "")
    if not parsed.database or not source_path.is_file():
        raise NotFound(f"no store at {source_path}; is the hub using another data dir?")
    dest = dest.expanduser()
    if dest.exists() and not force:
        raise Conflict(f"{dest} exists; pick another file or pass --force to replace it")
    if dest.resolve() == source_path.resolve():
        raise InvalidArgument("the backup file is the store itself; pick another file")
    if not dest.parent.is_dir():
        raise InvalidArgument(f"no directory {dest.parent}; create it first")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(tmp)
        try:
            source.backup(target, pages=PAGES_PER_STEP)
        finally:
            target.close()
        os.replace(tmp, dest)
    except sqlite3.Error as err:
        raise InvalidArgument(f"cannot back up {source_path} to {dest}: {err}") from None
    finally:
        source.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return Backup(str(dest), dest.stat().st_size, str(source_path))
