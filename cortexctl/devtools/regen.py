"""Regenerate every generated file: protobuf code, shell completions, man pages.

    python -m cortexctl.devtools.regen          # rewrite what is stale
    python -m cortexctl.devtools.regen --check  # exit 1 and list what is stale

Generated files are committed so a checkout works without the generators; the test
suite runs ``--check`` so a stale file fails CI.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_SOURCE = Path("cortex/mesh/v1/mesh.proto")
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
                str(PROTO_SOURCE),
            ],
            check=True,
        )
        built = Path(tmp) / PROTO_SOURCE.parent
        for name in ("mesh_pb2.py", "mesh_pb2.pyi", "mesh_pb2_grpc.py"):
            text = (built / name).read_text()
            # protoc writes absolute imports of the proto package; ours lives in cortexctl.proto.
            text = re.sub(
                r"^from cortex\.mesh\.v1 import", "from cortexctl.proto import", text, flags=re.M
            )
            yield PROTO_OUT / name, text


def generated_completions() -> Iterator[tuple[Path, str]]:
    from cortexctl.cli.completion import SHELLS, completion_script

    for shell, filename in SHELLS.items():
        yield REPO / "completions" / filename, completion_script(shell)


def generated_man_pages() -> Iterator[tuple[Path, str]]:
    from cortexctl.cli.manpages import man_pages

    for name, text in man_pages():
        yield REPO / "man" / name, text


GENERATORS: dict[str, Callable[[], Iterator[tuple[Path, str]]]] = {
    "proto": generated_proto,
    "completions": generated_completions,
    "man": generated_man_pages,
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
        print("run: python -m cortexctl.devtools.regen", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
