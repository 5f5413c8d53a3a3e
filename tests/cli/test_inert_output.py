"""Node-controlled strings are inert on the operator's terminal, in every renderer."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cortexctl.core import clock, invites, journal, mirrors, nodes
from cortexctl.core.sandbox import SandboxDefaults
from cortexctl.store.engine import Store, upgrade
from cortexctl.store.models import Task
from tests.helpers import run_cli

# What a hostile node can put in its handshake, its results and its file names: a terminal
# title change, a screen clear, a C1 CSI, a bidi override, DEL, and rich markup.
HOSTILE = (
    "\x1b]0;pwned\x07\x1b[2J[red]evil[/red][link=https://x.example]x[/link]\x9b1m\u202eabc\x7f"
)
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\x7f")


@pytest.fixture
def hostile_node(store_env: dict[str, str], data_dir: Path) -> str:
    store = Store(store_env["CORTEX_DATABASE_URL"])
    try:
        upgrade(store)
        with store.session(write=True) as session:
            token = invites.create_invite(session, ttl_s=60).token
        with store.session(write=True) as session:
            joined = nodes.join_with_invite(
                session,
                token,
                hostname=HOSTILE,
                requested_name="n1",
                agent_version=HOSTILE[:60],
                labels={"evil": HOSTILE},
                capabilities=[],
            )
            node_id = joined.node.id
            task = journal.submit_task(
                session, joined.node, argv=["true"], defaults=SandboxDefaults(mode="permissive")
            )
        with store.session(write=True) as session:
            row = session.get(Task, task.id)
            assert row is not None
            row.state, row.finished_at = "failed", clock.now()
            row.stdout, row.stderr, row.error = HOSTILE.encode(), HOSTILE.encode(), HOSTILE
        name = f"file{HOSTILE.replace('/', '_')}.txt"
        with store.session(write=True) as session:  # `mirrors ls` reads the file records
            mirrors.record_files(session, [mirrors.FileRecord(node_id, name, 1, "", "hub_x")])
    finally:
        store.dispose()
    mirror = data_dir / "mirrors" / node_id
    mirror.mkdir(parents=True)
    (mirror / name).write_text("x")
    return task.id


def assert_inert(output: str, slash: str = "/") -> None:
    for char in RAW:
        assert char not in output, f"raw {char!r} reached the terminal: {output!r}"
    # Markup shown as text, never interpreted (a file name has "_" for "/").
    assert f"[red]evil[{slash}red]" in output
    assert f"[link=https:{slash}{slash}x.example]" in output
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in output and "\\u202e" in output


@pytest.mark.parametrize(
    "args",
    [
        ["nodes", "list"],
        ["nodes", "show", "n1"],
        ["mirrors", "ls", "n1"],
        ["mesh", "status"],
    ],
)
def test_node_strings_are_escaped_in_tables_and_fields(hostile_node: str, args: list[str]) -> None:
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    output = result.stdout + result.stderr
    for char in RAW:
        assert char not in output
    if args[0] != "mesh":  # the mesh table shows nothing a node chose
        assert_inert(output, "_" if args[0] == "mirrors" else "/")


def test_task_output_and_error_are_escaped_in_task_views(hostile_node: str) -> None:
    shown = run_cli("tasks", "show", hostile_node)
    assert shown.exit_code == 0, shown.stderr
    assert_inert(shown.stdout)
    waited = run_cli("tasks", "wait", hostile_node)
    assert waited.exit_code != 0  # a failed task with no exit code: 120-125
    assert_inert(waited.stderr.split("task ", 1)[1])  # the error in the closing note


def test_the_live_view_shows_node_strings_as_text(hostile_node: str) -> None:
    from rich.console import Console

    from cortexctl.cli import render
    from cortexctl.core.status import JobStatusView, MeshSnapshot

    job = JobStatusView(
        hub_id="hub_1",
        job="mirror_gc",
        interval_s=60.0,
        last_started_at=clock.now(),
        last_duration_s=0.1,
        last_outcome="failed",
        last_error=HOSTILE[:59],
        last_result={},
        next_run_at=None,
        runs=1,
        failures=1,
    )
    snap = MeshSnapshot(
        taken_at=clock.now(),
        nodes=[],
        hubs=[],
        summary={
            "node_count": 0,
            "online_count": 0,
            "stale_count": 0,
            "offline_count": 0,
            "revoked_count": 0,
            "hub_count": 0,
            "running_tasks": 0,
            "pending_tasks": 0,
            "uploads_in_flight": 0,
        },
        jobs=[job],
    )
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=400, color_system="truecolor")
    console.print(render.mesh_renderable(snap, show_jobs=True))
    shown = screen.getvalue()
    assert "\x1b]0;pwned" not in shown and "\x1b[2J" not in shown and "\u202e" not in shown
    assert "\\x1b]0;pwned" in shown and "[red]evil" in shown


def test_inert_escapes_every_unsafe_class() -> None:
    from cortexctl.cli.render import inert

    unsafe = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))]
    unsafe += [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
    for char in unsafe:
        assert char not in inert(f"a{char}b"), repr(char)
    assert inert("héllo wörld [b]") == "héllo wörld [b]"
    assert inert("a\nb\tc", multiline=True) == "a\nb\tc"
    assert inert("a\nb") == "a\\nb"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_task_output_is_inert_on_a_terminal_and_exact_when_piped() -> None:
    from cortexctl.cli import render

    screen, pipe = Terminal(), io.StringIO()
    render.task_output(HOSTILE + "\nline 2\n", screen)
    render.task_output(HOSTILE + "\nline 2\n", pipe)
    assert pipe.getvalue() == HOSTILE + "\nline 2\n"  # data for scripts, byte for byte
    assert_inert(screen.getvalue())
    assert screen.getvalue().endswith("\nline 2\n")
