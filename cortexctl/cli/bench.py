"""`cortexctl bench`: the project's performance harness (cortexctl.bench.scenarios)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cortexctl.cli import render
from cortexctl.cli.options import duration
from cortexctl.errors import InvalidArgument

SCENARIO_NAMES = ("joins", "rejoins", "streams", "storm", "dispatch", "upload")
# The figure shown for each scenario's cases (all of them are in --json).
SHOWN = {
    "joins": ("per_s", "p50_ms", "p99_ms", "server_us_each", "unavailable"),
    "rejoins": ("per_s", "p50_ms", "p99_ms", "server_us_each", "unavailable"),
    "streams": (
        "p50_ms",
        "p99_ms",
        "server_us_per_heartbeat",
        "cpu_percent",
        "rss_kb_per_node",
        "acked",
    ),
    "storm": ("got_policy", "refused", "p50_ms", "p99_ms", "max_ms", "server_cpu_s"),
    "dispatch": ("done", "start_p50_ms", "start_p99_ms", "result_p50_ms", "result_p99_ms"),
    "upload": ("mb_per_s", "files_per_s", "server_us_per_file", "files"),
}


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise InvalidArgument(f"{what} takes positive numbers separated by commas, e.g. 1,8")
    return values


def bench(
    ctx: typer.Context,
    scenarios: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[SCENARIO]...",
            help="joins, rejoins, streams, storm, dispatch, upload (default: all).",
            show_default=False,
        ),
    ] = None,
    baseline: Annotated[
        bool,
        typer.Option("--baseline", help="Run the same load against a bare grpc.aio server too."),
    ] = False,
    joins: Annotated[
        int, typer.Option("--joins", min=1, help="Nodes joining in joins and rejoins.")
    ] = 500,
    in_flight: Annotated[
        int, typer.Option("--in-flight", min=1, help="Joins in flight at once.")
    ] = 16,
    steps: Annotated[
        str,
        typer.Option(metavar="N,N,...", help="Connected nodes of each streams step."),
    ] = "1000",
    length: Annotated[
        str,
        typer.Option("--duration", metavar="DURATION", help="Measured time of each streams step."),
    ] = "10s",
    interval: Annotated[
        str, typer.Option(metavar="DURATION", help="Heartbeat interval of the nodes.")
    ] = "1s",
    storm: Annotated[
        int, typer.Option("--storm", min=1, help="Nodes opening their streams at once.")
    ] = 1000,
    tasks: Annotated[int, typer.Option("--tasks", min=1, help="Tasks dispatched.")] = 100,
    task_rate: Annotated[
        float, typer.Option("--task-rate", min=0.1, help="Tasks submitted per second.")
    ] = 20.0,
    files: Annotated[int, typer.Option("--files", min=1, help="Small files uploaded.")] = 1000,
    file_kib: Annotated[int, typer.Option("--file-kib", min=1, help="Size of each.")] = 64,
    upload_parallel: Annotated[
        str, typer.Option(metavar="N,N,...", help="Uploads in flight, one run each.")
    ] = "1,8",
    big_mib: Annotated[
        int, typer.Option("--big-mib", min=0, help="One large file's MiB (0: none).")
    ] = 256,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Load generator processes.")] = 2,
    processes: Annotated[
        str,
        typer.Option(
            metavar="N,N,...",
            help="Hub processes (`serve --processes N`, PostgreSQL only): one run each, "
            "shown side by side.",
        ),
    ] = "1",
    database_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="The hub's store (default: a throwaway SQLite file); bench nodes are added to it.",
        ),
    ] = None,
) -> None:
    """Measure a throwaway hub under load; with --baseline, a bare gRPC server beside it.

    Each scenario starts a fresh `cortexctl serve` (and bare server) on this machine; the
    load runs in separate processes and server CPU and memory are read from outside.
    Latency counts from each request's scheduled send time. Figures vary between runs on
    shared machines: compare hub/bare ratios from one run.

    Example: cortexctl bench streams --steps 1000,2000,4000 --baseline --json
    """
    from cortexctl.bench.scenarios import BenchConfig, run
    from cortexctl.cli.context import cli_context

    # --database-url is also a global option: the root takes it from anywhere on the line.
    database_url = database_url or cli_context(ctx).flags.get("store.database_url")

    chosen = list(scenarios or SCENARIO_NAMES)
    unknown = [name for name in chosen if name not in SCENARIO_NAMES]
    if unknown:
        raise InvalidArgument(
            f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIO_NAMES)}"
        )
    duration_s = duration(length, "--duration") or 0.0
    interval_s = duration(interval, "--interval") or 0.0
    if duration_s <= 0 or interval_s <= 0:
        raise InvalidArgument("--duration and --interval must be positive, e.g. 10s and 1s")
    hub_processes = _ints(processes, "--processes")
    if max(hub_processes) > 1 and not (database_url or "").startswith("postgres"):
        raise InvalidArgument(
            "--processes above 1 needs PostgreSQL (serve --processes does): "
            "give --database-url postgresql+psycopg://..."
        )
    config = BenchConfig(
        joins=joins,
        in_flight=in_flight,
        steps=_ints(steps, "--steps"),
        duration_s=duration_s,
        interval_s=interval_s,
        storm=storm,
        tasks=tasks,
        task_rate=task_rate,
        files=files,
        file_kib=file_kib,
        upload_parallel=_ints(upload_parallel, "--upload-parallel"),
        big_mib=big_mib,
        workers=workers,
        database_url=database_url,
        processes=hub_processes,
    )
    with render.status("starting the benchmark", True) as show:
        report = run(chosen, config, baseline=baseline, progress=show)

    def human() -> None:
        machine = report["machine"]
        render.message(
            f"{machine['cpus']} CPUs, Python {machine['python']}, load average "
            f"{machine['load_average'][0]} at the start, store {machine['store']}"
        )
        if len(hub_processes) > 1:
            side_by_side()
            return
        rows: list[list[Any]] = []
        for name, cases in report["scenarios"].items():
            for case in cases:
                for key in SHOWN[name]:
                    bare = case["bare"] or {}
                    rows.append(
                        [
                            name,
                            case["label"],
                            key,
                            case["hub"].get(key),
                            bare.get(key, "" if baseline else None),
                            case["ratio"].get(key),
                        ]
                    )
        render.print_table(["SCENARIO", "CASE", "FIGURE", "HUB", "BARE", "HUB/BARE"], rows)

    def side_by_side() -> None:
        """One column per `serve --processes N`: the same case and figure on one row."""
        rows: list[list[Any]] = []
        for name, cases in report["scenarios"].items():
            by_label: dict[str, dict[int, dict[str, Any]]] = {}
            for case in cases:
                by_label.setdefault(case["label"], {})[case["processes"]] = case["hub"]
            for label, runs in by_label.items():
                for key in SHOWN[name]:
                    rows.append(
                        [name, label, key, *(runs.get(n, {}).get(key) for n in hub_processes)]
                    )
        headers = [f"{n} PROCESS{'ES' if n > 1 else ''}" for n in hub_processes]
        render.print_table(["SCENARIO", "CASE", "FIGURE", *headers], rows)

    render.emit(report, human=human)
