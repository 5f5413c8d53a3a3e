"""The shape of the package (docs/ARCHITECTURE.md): which part may import which.

Imports are read from the source (every import statement, those inside functions too, but
not those under ``if TYPE_CHECKING:``), so a rule holds for lazy imports as well.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cortexctl"

# Leaf modules: the standard library only (plus the named cortexctl leaves).
LEAVES = {
    "cortexctl.errors": set(),
    "cortexctl.tuning": set(),
    "cortexctl.core.clock": set(),
    "cortexctl.core.permissions": {"cortexctl.errors", "cortexctl.errors.InvalidArgument"},
    "cortexctl.redaction": set(),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for path in PACKAGE.rglob("*.py")
        if "proto" not in path.relative_to(PACKAGE).parts
    }


@cache
def imports_of(name: str) -> frozenset[str]:
    """Every module ``name`` imports at run time (absolute names, as written)."""
    path = modules()[name]
    tree = ast.parse(path.read_text())
    type_only = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(found)


def imports_any(name: str, prefixes: tuple[str, ...]) -> set[str]:
    return {
        imported
        for imported in imports_of(name)
        if any(imported == prefix or imported.startswith(prefix + ".") for prefix in prefixes)
    }


def part(name: str) -> str:
    return name.split(".")[1] if name.count(".") else ""


def test_core_imports_no_grpc_typer_rich_or_click() -> None:
    offenders = {
        name: imports_any(name, ("grpc", "typer", "rich", "click", "google.protobuf"))
        for name in modules()
        if part(name) == "core"
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_core_and_store_import_no_edge() -> None:
    edges = ("cortexctl.cli", "cortexctl.hub", "cortexctl.agent", "cortexctl.proto")
    offenders = {
        name: imports_any(name, edges) for name in modules() if part(name) in ("core", "store")
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_store_imports_only_the_leaves_of_cortexctl() -> None:
    allowed = {"cortexctl.store", *LEAVES}
    for name in modules():
        if part(name) == "store":
            found = {
                imported
                for imported in imports_any(name, ("cortexctl",))
                if not any(imported == a or imported.startswith(a + ".") for a in allowed)
            }
            assert not found, f"{name} imports {found}"


def test_edges_import_no_store_models() -> None:
    offenders = {
        name
        for name in modules()
        if part(name) in ("cli", "hub", "agent") and imports_any(name, ("cortexctl.store.models",))
    }
    assert offenders == set()


@pytest.mark.parametrize(
    ("other", "only_from"),
    [
        ("cortexctl.hub", "cortexctl.cli.serve"),
        ("cortexctl.agent", "cortexctl.cli.agent"),
        ("cortexctl.bench", "cortexctl.cli.bench"),
    ],
)
def test_each_heavy_part_is_reached_from_one_command_module(other: str, only_from: str) -> None:
    users = {name for name in modules() if part(name) == "cli" and imports_any(name, (other,))}
    assert users <= {only_from}


def test_the_package_needs_no_dev_tooling_at_run_time() -> None:
    # click-man and grpcio-tools are test extras; tools/ is not in the wheel.
    users = {
        name: found
        for name in modules()
        if (found := imports_any(name, ("click_man", "grpc_tools", "tools")))
    }
    assert users == {}


def test_only_render_imports_rich() -> None:
    users = {name for name in modules() if imports_any(name, ("rich",))}
    assert users <= {"cortexctl.cli.render"}


def test_the_agent_needs_no_store() -> None:
    offenders = {
        name: imports_any(name, ("sqlalchemy", "alembic", "cortexctl.store", "cortexctl.hub"))
        for name in modules()
        if part(name) == "agent"
    }
    assert {name: found for name, found in offenders.items() if found} == {}


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_leaf_modules_import_only_the_standard_library(leaf: str) -> None:
    third_party = {
        imported.split(".")[0]
        for imported in imports_of(leaf)
        if imported.split(".")[0] not in sys.stdlib_module_names and imported != "__future__"
    }
    ours = imports_any(leaf, ("cortexctl",))
    assert third_party - {"cortexctl"} == set()
    assert ours <= LEAVES[leaf]


def test_no_import_cycle() -> None:
    graph = {
        name: {i for i in imports_of(name) if i in modules() and i != name} for name in modules()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in graph:
        if name not in index:
            visit(name)
    assert cycles == []


def imported_by(*statements: str) -> set[str]:
    """Every module a fresh interpreter has loaded after running ``statements``."""
    code = "import sys\n" + "".join(f"{s}\n" for s in statements)
    code += "print('--- modules ---'); print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(out.rsplit("--- modules ---", 1)[1].split())


def test_agent_sync_path_imports_no_sqlalchemy() -> None:
    loaded = imported_by(
        "import cortexctl.cli.app",
        "import cortexctl.cli.agent",
        "import cortexctl.agent.runner",
        "import cortexctl.agent.syncer",
        "import cortexctl.tuning",
    )
    assert not {name for name in loaded if name.split(".")[0] in ("sqlalchemy", "alembic")}


def test_store_commands_import_no_protobuf_or_hub(tmp_path: Path) -> None:
    run = (
        "from cortexctl.cli.app import app\n"
        "for args in (['nodes', 'list'], ['tasks', 'list'], ['invites', 'list'],"
        " ['mesh', 'status'], ['gc', 'locks', '--dry-run']):\n"
        f"    try: app(['--data-dir', {str(tmp_path)!r}, *args], standalone_mode=False)\n"
        "    except SystemExit: pass"
    )
    loaded = imported_by(run)
    assert "sqlalchemy" in loaded  # the commands did reach the store
    heavy = {name for name in loaded if name.startswith(("grpc", "google.protobuf"))}
    ours = {name for name in loaded if name.startswith(("cortexctl.hub", "cortexctl.proto"))}
    assert heavy | ours == set()


def test_tuning_is_a_leaf_at_run_time() -> None:
    loaded = imported_by("import cortexctl.tuning")
    assert {name for name in loaded if name.startswith("cortexctl")} == {
        "cortexctl",
        "cortexctl.tuning",
    }


def test_upload_paths_need_no_database() -> None:
    assert "sqlalchemy" not in imported_by("import cortexctl.core.uploads")
