"""Nothing of the hub is world-readable, whatever the umask and whatever a node sends."""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cortexctl.core.permissions import HubModes, hub_modes, secure_data_dir
from cortexctl.core.uploads import PartFile
from cortexctl.errors import InvalidArgument
from cortexctl.store.engine import Store, upgrade


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask: whatever is private below is so because the hub made it so."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def other_group() -> int:
    """A group this user may give files to, other than its own primary group if possible."""
    if os.geteuid() == 0:
        return next((g.gr_gid for g in grp.getgrall() if g.gr_gid != os.getgid()), 0)
    return next((g for g in os.getgroups() if g != os.getgid()), os.getgid())


def upload(root: Path, path: str, requested_mode: int, modes: HubModes) -> Path:
    import hashlib

    part = PartFile(root, tuple(path.split("/")), "a" * 32, modes)
    part.commit([b"data"], hashlib.sha256(b"data").hexdigest(), 4, requested_mode)
    return part.final_path


def test_the_store_and_data_dir_are_private_under_any_umask(
    tmp_path: Path, open_umask: None
) -> None:
    data = tmp_path / "data"
    secure_data_dir(data)
    store = Store(f"sqlite:///{data / 'cortex.db'}")
    try:
        upgrade(store)
        with store.session(write=True) as session:
            session.connection().exec_driver_sql("CREATE TABLE t (x)")
        files = [data / "cortex.db", data / "cortex.db-wal", data / "cortex.db-shm"]
        assert all(path.exists() for path in files)
        assert {path.name: mode(path) for path in files} == {p.name: 0o600 for p in files}
        assert mode(data) == 0o700 and mode(data / "mirrors") == 0o700
    finally:
        store.dispose()


def test_an_existing_loose_data_dir_and_store_are_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    (data / "cortex.db").write_bytes(b"")
    os.chmod(data / "cortex.db", 0o644)
    secure_data_dir(data)
    Store(f"sqlite:///{data / 'cortex.db'}").dispose()
    assert (mode(data), mode(data / "cortex.db")) == (0o700, 0o600)


@pytest.mark.parametrize(
    ("requested", "expected"), [(0o777, 0o640), (0o4755, 0o640), (0o600, 0o600), (0, 0o640)]
)
def test_mirror_files_are_at_most_0640_whatever_mode_a_node_sends(
    tmp_path: Path, open_umask: None, requested: int, expected: int
) -> None:
    root = tmp_path / "mirrors" / "nd_1"
    final = upload(root, "deep/er/file.txt", requested & 0o7777, HubModes())
    assert mode(final) == expected
    for folder in (root, root / "deep", root / "deep" / "er"):
        assert mode(folder) == 0o700


def test_a_hub_group_shares_the_store_and_mirrors(tmp_path: Path, open_umask: None) -> None:
    gid = other_group()
    modes = HubModes(gid)
    data = tmp_path / "data"
    secure_data_dir(data, modes)
    store = Store(f"sqlite:///{data / 'cortex.db'}", modes=modes)
    try:
        upgrade(store)
        for path in (data / "cortex.db", data / "cortex.db-wal", data / "cortex.db-shm"):
            assert (mode(path), os.lstat(path).st_gid) == (0o660, gid), path
    finally:
        store.dispose()
    assert (mode(data), os.lstat(data).st_gid) == (0o2770, gid)
    final = upload(data / "mirrors" / "nd_1", "sub/f", 0o777, modes)
    assert (mode(final), os.lstat(final).st_gid) == (0o660, gid)
    assert (mode(final.parent), os.lstat(final.parent).st_gid) == (0o2770, gid)


def test_an_unknown_hub_group_is_a_usage_error() -> None:
    with pytest.raises(InvalidArgument, match="no such group"):
        hub_modes("no-such-group-cortex")
    assert hub_modes("") == HubModes()
