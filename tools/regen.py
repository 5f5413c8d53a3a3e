"""Regenerate every generated file: protobuf code, shell completions, man pages, the
role tables of the docs.

    .venv/bin/python tools/regen.py          # rewrite what is stale
    .venv/bin/python tools/regen.py --check  # exit 1 and list what is stale

Generated files are committed so a checkout works without the generators; the test
suite runs ``--check`` so a stale file fails CI. This is dev tooling: it lives in the
checkout, not in the package (it needs grpcio-tools and click-man, the test extra).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `tools` importable
    sys.path.insert(0, str(REPO))
PROTO_SOURCES = (Path("cortex/mesh/v1/mesh.proto"), Path("cortex/admin/v1/admin.proto"))
PROTO_OUT = REPO / "cortexctl" / "proto"


def generated_proto() -> Iterator[tuple[Path, str]]:
    """Yield (path, content) for the protobuf and gRPC modules built from protos/."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{REPO / 'protos'}",
                f"--python_out={tmp}",
                f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}",
                *(str(source) for source in PROTO_SOURCES),
            ],
            check=True,
        )
        for source in PROTO_SOURCES:
            built = Path(tmp) / source.parent
            for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
                name = source.stem + suffix
                text = (built / name).read_text()
                # protoc writes absolute imports of the proto packages; ours live in
                # cortexctl.proto.
                text = re.sub(
                    r"^from cortex\.(mesh|admin)\.v1 import",
                    "from cortexctl.proto import",
                    text,
                    flags=re.M,
                )
                yield PROTO_OUT / name, text


def generated_completions() -> Iterator[tuple[Path, str]]:
    from typer.main import get_command

    from cortexctl.cli.app import app
    from cortexctl.cli.completion import SHELLS, completion_script

    for shell, filename in SHELLS.items():
        yield REPO / "completions" / filename, completion_script(shell, get_command(app))


def generated_man_pages() -> Iterator[tuple[Path, str]]:
    from tools.manpages import man_pages

    for name, text in man_pages():
        yield REPO / "man" / name, text


def generated_docs() -> Iterator[tuple[Path, str]]:
    """The admin role table of README.md and SECURITY.md, from core/roles.py."""
    from cortexctl.core.roles import with_table

    for name in ("README.md", "SECURITY.md"):
        yield REPO / name, with_table((REPO / name).read_text())


GENERATORS: dict[str, Callable[[], Iterator[tuple[Path, str]]]] = {
    "proto": generated_proto,
    "completions": generated_completions,
    "man": generated_man_pages,
    "docs": generated_docs,
}


def stale_files(kinds: list[str], write: bool) -> list[Path]:
    """Compare (and with ``write`` rewrite) generated files; return the stale ones."""
    stale: list[Path] = []
    for kind in kinds:
        expected = dict(GENERATORS[kind]())
        for path, text in expected.items():
            if not path.exists() or path.read_text() != text:
                stale.append(path)
                if write:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text)
        if kind == "man":
            # A page whose command was removed is stale too.
            for path in (REPO / "man").glob("*.1"):
                if path not in expected:
                    stale.append(path)
                    if write:
                        path.unlink()
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    parser.add_argument(
        "kinds",
        nargs="*",
        metavar="KIND",
        help=f"what to regenerate: {', '.join(GENERATORS)} (default: all)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.kinds) - set(GENERATORS))
    if unknown:
        parser.error(f"unknown kind {', '.join(unknown)}; choose from {', '.join(GENERATORS)}")
    stale = stale_files(args.kinds or list(GENERATORS), write=not args.check)
    for path in stale:
        verb = "stale" if args.check else "rewrote"
        print(f"{verb}: {path.relative_to(REPO)}")
    if args.check and stale:
        print("run: .venv/bin/python tools/regen.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
