"""Generated protobuf code matches protos/ (completions and man pages have their own tests)."""

from __future__ import annotations

from tools.regen import stale_files


def test_protobuf_code_is_current() -> None:
    assert stale_files(["proto"], write=False) == [], "run: .venv/bin/python tools/regen.py proto"
