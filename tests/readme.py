"""The README's code blocks, read the way the README tests use them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The installed entry point of this venv: what `.venv/bin` is in the README.
VENV_BIN = str(Path(sys.executable).parent)
INSTALL_PREFIX = "/opt/cortexctl/bin"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def code_blocks(title: str, language: str) -> list[list[str]]:
    """The lines of each ```language block of a README section."""
    return [
        block.strip("\n").splitlines()
        for block in re.findall(rf"```{language}\n(.*?)```", section(title), re.S)
    ]
