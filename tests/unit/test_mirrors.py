"""Mirror paths and the upload's temp file (core.uploads); mirror listing and GC."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from cortexctl.core import mirrors, uploads
from cortexctl.core.uploads import PartFile, check_sync_path
from cortexctl.errors import DataLoss, InvalidArgument

SHA_EMPTY = hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/etc/passwd",
        "a/../b",
        "..",
        "./a",
        "a\0b",
        "a\\b",
        "a//b",
        "a/",
        "x" * 256,
        "a/" * 512 + "b",
        ".cortex-sync." + "0" * 32 + ".tmp",
    ],
)
def test_bad_paths_are_invalid(path: str) -> None:
    with pytest.raises(InvalidArgument):
        check_sync_path(path)


@pytest.mark.parametrize("path", ["a", "a/b/c.txt", ".hidden", "dir/..x", "ünï/ko.de"])
def test_good_paths(path: str) -> None:
    assert "/".join(check_sync_path(path)) == path


def test_part_file_appears_only_when_verified(tmp_path: Path) -> None:
    root = tmp_path / "nd_1"
    part = PartFile(root, ("d", "f.bin"), "a" * 32)
    part.write([b"hello ", b"world"])
    assert not (root / "d" / "f.bin").exists()
    assert part.temp_path.exists()
    size, digest = part.commit([b"!"], hashlib.sha256(b"hello world!").hexdigest(), 12, 0o640)
    assert (size, (root / "d" / "f.bin").read_bytes()) == (12, b"hello world!")
    assert (root / "d" / "f.bin").stat().st_mode & 0o777 == 0o640
    assert digest == hashlib.sha256(b"hello world!").hexdigest()
    assert not part.temp_path.exists()
    assert part.discard() is False


def test_mismatch_is_data_loss_and_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "nd_1"
    part = PartFile(root, ("f",), "b" * 32)
    with pytest.raises(DataLoss, match="sha256 mismatch"):
        part.commit([b"abc"], SHA_EMPTY, None, 0o644)
    assert part.discard() is True
    other = PartFile(root, ("f",), "c" * 32)
    with pytest.raises(DataLoss, match="size mismatch"):
        other.commit([b"abc"], hashlib.sha256(b"abc").hexdigest(), 4, 0o644)
    other.discard()
    assert list(root.iterdir()) == []


def test_empty_file(tmp_path: Path) -> None:
    part = PartFile(tmp_path / "nd_1", ("empty",), "d" * 32)
    assert part.commit([], SHA_EMPTY, None, 0o644) == (0, SHA_EMPTY)
    assert (tmp_path / "nd_1" / "empty").read_bytes() == b""


def test_symlink_out_of_the_mirror_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "nd_1"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "esc").symlink_to(outside)
    (root / "target").symlink_to(outside / "file")
    for parts in (("esc", "x"), ("target",)):
        part = PartFile(root, parts, "e" * 32)
        with pytest.raises(InvalidArgument, match="outside"):
            part.commit([b"x"], hashlib.sha256(b"x").hexdigest(), None, 0o644)
        part.discard()
    assert list(outside.iterdir()) == []


def test_clashes_with_the_mirror_are_invalid(tmp_path: Path) -> None:
    root = tmp_path / "nd_1"
    (root / "dir").mkdir(parents=True)
    (root / "file").write_bytes(b"")
    for parts in (("dir",), ("file", "x")):
        part = PartFile(root, parts, "f" * 32)
        with pytest.raises(InvalidArgument):
            part.commit([b"x"], hashlib.sha256(b"x").hexdigest(), None, 0o644)
        part.discard()


def test_discard_after_end_blocks_a_late_write(tmp_path: Path) -> None:
    part = PartFile(tmp_path / "nd_1", ("f",), "1" * 32)
    part.write([b"abc"])
    assert part.discard() is True
    with pytest.raises(Exception, match="already ended"):
        part.write([b"late"])
    assert not part.temp_path.exists()


def test_listing_skips_partial_uploads(tmp_path: Path) -> None:
    root = tmp_path / "nd_1"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"12345")
    (root / "d" / uploads.temp_name("2" * 32)).write_bytes(b"partial")
    (root / "link").symlink_to("/etc/passwd")
    files = [(rel, info.st_size) for rel, info in mirrors.walk_files(root)]
    assert ("d/f", 5) in files


def test_orphan_temps_respect_keep_and_grace(tmp_path: Path) -> None:
    root = tmp_path / "nd_1"
    (root / "d").mkdir(parents=True)
    old, kept, young = (root / "d" / uploads.temp_name(c * 32) for c in "345")
    for path in (old, kept, young):
        path.write_bytes(b"xx")
    past = time.time() - 3600
    for path in (old, kept):
        os.utime(path, (past, past))
    (root / "d" / "real.txt").write_bytes(b"data")
    dry = mirrors.remove_orphan_temps(root, {str(kept)}, grace_s=60, dry_run=True)
    assert dry == [(str(old), 2)] and old.exists()
    assert mirrors.remove_orphan_temps(root, {str(kept)}, grace_s=60, dry_run=False) == dry
    assert not old.exists() and kept.exists() and young.exists()


def test_empty_dirs_are_removed_bottom_up(tmp_path: Path) -> None:
    root = tmp_path / "nd_1"
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "keep").mkdir()
    (root / "keep" / "f").write_bytes(b"")
    past = time.time() - 3600
    for path in (root / "a", root / "a" / "b", root / "a" / "b" / "c"):
        os.utime(path, (past, past))
    assert mirrors.remove_empty_dirs(root, grace_s=60, dry_run=True, keep_root=True) == 3
    assert (root / "a" / "b" / "c").exists()
    assert mirrors.remove_empty_dirs(root, grace_s=60, dry_run=False, keep_root=True) == 3
    assert sorted(p.name for p in root.iterdir()) == ["keep"]
