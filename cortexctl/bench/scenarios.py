"""The scenarios of `cortexctl bench`, each run against a hub and, with ``baseline``, against
the bare grpc.aio server (cortexctl.bench.bare) in the same run.

The hub is a real `cortexctl serve` child on a throwaway data dir (SQLite, or the given
store); the load runs in worker processes (cortexctl.bench.load); server CPU and RSS are
read from outside (psutil). Every scenario returns cases: a label, the hub's figures, the
bare server's (or None) and hub/bare for each figure both have.
"""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cortexctl.bench import load
from cortexctl.bench.launcher import CORTEXCTL, HubProcess, start_hub, start_process

SCENARIOS = ("joins", "rejoins", "streams", "storm", "dispatch", "upload")
BARE_SCENARIOS = frozenset({"joins", "rejoins", "streams", "storm", "upload"})
Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchConfig:
    joins: int = 500
    in_flight: int = 16
    steps: tuple[int, ...] = (1000,)
    duration_s: float = 10.0
    interval_s: float = 1.0
    storm: int = 1000
    tasks: int = 100
    task_rate: float = 20.0
    dispatch_nodes: int = 4
    files: int = 1000
    file_kib: int = 64
    upload_parallel: tuple[int, ...] = (1, 8)
    big_mib: int = 256
    workers: int = 2
    database_url: str | None = None
    hub_args: tuple[str, ...] = ()
    processes: tuple[int, ...] = (1,)  # one run of each scenario per `serve --processes N`


@dataclass
class Case:
    label: str
    hub: dict[str, Any]
    bare: dict[str, Any] | None = None
    processes: int = 1  # the hub's `serve --processes`

    @property
    def ratio(self) -> dict[str, float]:
        if self.bare is None:
            return {}
        out = {}
        for key, value in self.hub.items():
            other = self.bare.get(key)
            if isinstance(value, int | float) and isinstance(other, int | float) and other:
                out[key] = round(value / other, 2)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "processes": self.processes,
            "hub": self.hub,
            "bare": self.bare,
            "ratio": self.ratio,
        }


@dataclass
class Target:
    kind: str  # "hub" or "bare"
    proc: HubProcess
    root: Path
    database_url: str | None = None
    store: Any = None
    prefix: str = field(default_factory=lambda: secrets.token_hex(3))

    @property
    def address(self) -> str:
        return self.proc.address

    @property
    def pid(self) -> int:
        return self.proc.pid

    def token(self, uses: int) -> str:
        if self.store is None:
            return "bare"
        from cortexctl.core import invites

        with self.store.session(write=True) as session:
            return invites.create_invite(
                session, ttl_s=3600, uses=max(1, uses), sandbox="permissive"
            ).token


def percentiles(samples: list[float], prefix: str = "") -> dict[str, float]:
    if not samples:
        return {f"{prefix}p50_ms": 0.0, f"{prefix}p99_ms": 0.0, f"{prefix}max_ms": 0.0}
    ordered = sorted(samples)
    return {
        f"{prefix}p50_ms": round(statistics.median(ordered), 2),
        f"{prefix}p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        f"{prefix}max_ms": round(ordered[-1], 2),
    }


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextlib.contextmanager
def hub_target(
    root: Path, config: BenchConfig, interval_s: float, processes: int = 1
) -> Iterator[Target]:
    from cortexctl.store.engine import Store

    data = root / "hub-data"
    url = config.database_url or f"sqlite:///{data / 'cortex.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORTEX_")}
    env.update({"CORTEX_DATA_DIR": str(data), "CORTEX_DATABASE_URL": url, "HOME": str(root)})
    hub = start_hub(
        root / "hub",
        env,
        "--heartbeat-interval",
        f"{interval_s}s",
        "--log-level",
        "warning",
        *config.hub_args,
        *(("--processes", str(processes)) if processes > 1 else ()),
    )
    store = Store(url, pool_size=2)
    try:
        yield Target("hub", hub, root, url, store)
    finally:
        store.dispose()
        hub.stop(60)


@contextlib.contextmanager
def bare_target(root: Path) -> Iterator[Target]:
    args = [
        *CORTEXCTL[:1],
        "-m",
        "cortexctl.bench.bare",
        "--ready-file",
        str(root / "bare" / "ready.json"),
        "--data-dir",
        str(root / "bare-data"),
    ]
    proc = start_process(args, root / "bare", dict(os.environ), log_name="bare.log", what="bare")
    try:
        yield Target("bare", proc, root)
    finally:
        proc.stop(30)


# --- the scenarios --------------------------------------------------------------------------


def join_nodes(
    target: Target, count: int, config: BenchConfig, *, label: str = "n"
) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """``count`` first joins with one invite of many uses: figures and (name, id, cred)."""
    token = target.token(count)
    names = [f"b{target.prefix}{label}{index}" for index in range(count)]
    return _run_joins(target, config, names, token=token, credentials=None)


def _run_joins(
    target: Target,
    config: BenchConfig,
    names: list[str],
    *,
    token: str,
    credentials: dict[str, str] | None,
) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    parts = load.split(names, config.workers)
    lanes = max(1, config.in_flight // len(parts))
    start_at = time.time() + 2.0  # every worker imported and connected by then
    workers = load.start_workers(
        load.join_worker,
        [
            {
                "address": target.address,
                "token": token,
                "names": part,
                "credentials": {n: credentials[n] for n in part} if credentials else None,
                "in_flight": lanes,
                "start_at": start_at,
                "pid": target.pid,
                "meter": True,
            }
            for part in parts
        ],
    )
    results = workers.results(600)
    latencies = [x for r in results for x in r["latencies_ms"]]
    errors: dict[str, int] = {}
    for result in results:
        for code, n in result["errors"].items():
            errors[code] = errors.get(code, 0) + n
    elapsed = max(r["ended"] for r in results) - min(r["began"] for r in results)
    cpu = max(r["cpu_end"] for r in results) - min(r["cpu_start"] for r in results)
    figures = {
        "count": len(latencies),
        "per_s": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
        **percentiles(latencies),
        "server_us_each": round(cpu * 1e6 / max(1, len(latencies))),
        "unavailable": errors.get("UNAVAILABLE", 0),
        "errors": errors,
    }
    return figures, [j for r in results for j in r["joined"]]


def scenario_joins(target: Target, config: BenchConfig, progress: Progress) -> list[Case]:
    progress(f"{target.kind}: {config.joins} first joins, {config.in_flight} in flight")
    figures, _ = join_nodes(target, config.joins, config, label="j")
    return [Case(f"first joins, {config.in_flight} in flight", figures)]


def scenario_rejoins(target: Target, config: BenchConfig, progress: Progress) -> list[Case]:
    progress(f"{target.kind}: joining {config.joins} nodes to rejoin")
    _, joined = join_nodes(target, config.joins, config, label="r")
    credentials = {name: cred for name, _, cred in joined}
    progress(f"{target.kind}: {len(credentials)} rejoins, {config.in_flight} in flight")
    figures, _ = _run_joins(target, config, list(credentials), token="", credentials=credentials)
    return [Case(f"rejoins, {config.in_flight} in flight", figures)]


def scenario_streams(target: Target, config: BenchConfig, progress: Progress) -> list[Case]:
    most = max(config.steps)
    progress(f"{target.kind}: joining {most} nodes")
    _, joined = join_nodes(target, most, config, label="s")
    cases = []
    for step in config.steps:
        progress(f"{target.kind}: {step} streams, 1 heartbeat per {config.interval_s:g}s")
        nodes = [(node_id, cred) for _, node_id, cred in joined[:step]]
        rss_before = load.cpu_of(target.pid)[1]
        start_at = time.time() + 2.0 + step / 2000  # workers up, channels created
        # Opens are spread over one interval; the first interval and a half are set-up.
        measure_from = start_at + 1.5 * config.interval_s + 1.0
        measure_until = measure_from + config.duration_s
        workers = load.start_workers(
            load.stream_worker,
            [
                {
                    "address": target.address,
                    "nodes": part,
                    "interval": config.interval_s,
                    "start_at": start_at,
                    "measure_from": measure_from,
                    "measure_until": measure_until,
                    "stop_at": measure_until + config.interval_s,
                }
                for part in load.split(nodes, config.workers)
            ],
        )
        time.sleep(max(0.0, measure_from - time.time()))
        cpu_from, _ = load.cpu_of(target.pid)
        time.sleep(max(0.0, measure_until - time.time()))
        cpu_until, rss_after = load.cpu_of(target.pid)
        results = workers.results(120 + step / 50)
        latencies = [x for r in results for x in r["latencies_ms"]]
        errors: dict[str, int] = {}
        for result in results:
            for code, n in result["errors"].items():
                errors[code] = errors.get(code, 0) + n
        cpu = cpu_until - cpu_from
        figures = {
            "nodes": step,
            "acked": len(latencies),
            **percentiles(latencies),
            "server_us_per_heartbeat": round(cpu * 1e6 / max(1, len(latencies))),
            "cpu_percent": round(cpu * 100 / config.duration_s, 1),
            "rss_kb_per_node": round((rss_after - rss_before) / 1024 / step, 1),
            "errors": errors,
        }
        cases.append(Case(f"{step} nodes, 1 heartbeat/{config.interval_s:g}s", figures))
    return cases


def scenario_storm(target: Target, config: BenchConfig, progress: Progress) -> list[Case]:
    progress(f"{target.kind}: joining {config.storm} nodes for the storm")
    _, joined = join_nodes(target, config.storm, config, label="t")
    nodes = [(node_id, cred) for _, node_id, cred in joined]
    progress(f"{target.kind}: {len(nodes)} streams opening at the same instant")
    start_at = time.time() + 3.0 + len(nodes) / 1000
    timeout = 60.0 + len(nodes) / 100
    workers = load.start_workers(
        load.storm_worker,
        [
            {"address": target.address, "nodes": part, "start_at": start_at, "timeout": timeout}
            | {"pid": target.pid}
            for part in load.split(nodes, config.workers)
        ],
    )
    results = workers.results(timeout + 60)
    times = [x for r in results for x in r["to_policy_ms"]]
    refused: dict[str, int] = {}
    for result in results:
        for reason, n in result["refused"].items():
            refused[reason] = refused.get(reason, 0) + n
    figures = {
        "nodes": len(nodes),
        "got_policy": len(times),
        "refused": sum(refused.values()),
        **percentiles(times),
        "server_cpu_s": round(
            max(r["cpu_end"] for r in results) - min(r["cpu_start"] for r in results), 2
        ),
        "refusals": refused,
    }
    return [Case(f"{len(nodes)} streams opened at once", figures)]


def scenario_dispatch(target: Target, config: BenchConfig, progress: Progress) -> list[Case]:
    from cortexctl.core import journal, nodes
    from cortexctl.core.sandbox import SandboxDefaults

    assert target.store is not None
    progress(f"{target.kind}: {config.dispatch_nodes} nodes for dispatch")
    _, joined = join_nodes(target, config.dispatch_nodes, config, label="d")
    streams = load.start_workers(
        load.stream_worker,
        [
            {
                "address": target.address,
                "nodes": [(node_id, cred) for _, node_id, cred in joined],
                "interval": config.interval_s,
                "start_at": time.time(),
            }
        ],
    )
    try:
        while (event := streams.event(120)) is None or event[0] != "ready":
            if event is None:
                raise RuntimeError("the dispatch nodes did not all get their policy in 120s")
        progress(f"{target.kind}: {config.tasks} tasks at {config.task_rate:g}/s")
        defaults = SandboxDefaults(mode="permissive")
        scheduled: dict[str, float] = {}
        recorded: dict[str, float] = {}
        submitting = threading.Event()
        submitting.set()
        collector = threading.Thread(
            target=_collect_ended, args=(target, scheduled, recorded, submitting), daemon=True
        )
        collector.start()
        began = time.time()
        for index in range(config.tasks):
            at = began + index / config.task_rate
            time.sleep(max(0.0, at - time.time()))
            with target.store.session(write=True) as session:
                node = nodes.resolve_node(session, joined[index % len(joined)][1])
                task = journal.submit_task(session, node, argv=["true"], defaults=defaults)
            scheduled[task.id] = at
        submitting.clear()
        collector.join(60)
    finally:
        streams.stop.set()
    (result,) = streams.results(60)
    assigned: dict[str, float] = result["assigned"]
    starts = [(assigned[t] - at) * 1000 for t, at in scheduled.items() if t in assigned]
    trips = [(recorded[t] - at) * 1000 for t, at in scheduled.items() if t in recorded]
    figures = {
        "tasks": len(scheduled),
        "done": len(trips),
        **percentiles(starts, "start_"),
        **percentiles(trips, "result_"),
    }
    return [Case(f"submit -> starts on node -> result recorded ({len(joined)} nodes)", figures)]


def _collect_ended(
    target: Target, scheduled: dict[str, float], recorded: dict[str, float], submitting: Any
) -> None:
    """Look for ended tasks every 5 ms (the figure's resolution) until all are recorded."""
    from cortexctl.core import journal

    deadline = None
    while True:
        waiting = [task_id for task_id in list(scheduled) if task_id not in recorded]
        if waiting:
            with target.store.session() as session:
                ended = journal.terminal_among(session, waiting)
            now = time.time()
            for task_id in ended:
                recorded[task_id] = now
        if not submitting.is_set():
            if len(recorded) >= len(scheduled):
                return
            deadline = deadline or time.monotonic() + 60
            if time.monotonic() > deadline:
                return
        time.sleep(0.005)


def scenario_upload(target: Target, config: BenchConfig, progress: Progress) -> list[Case]:
    _, joined = join_nodes(target, 1, config, label="u")
    credential = joined[0][2]
    workspace = target.root / f"workspace-{target.kind}"
    small = workspace / "small"
    small.mkdir(parents=True, exist_ok=True)
    progress(f"{target.kind}: writing {config.files} files of {config.file_kib} KiB")
    paths = [f"small/{index:05d}.bin" for index in range(config.files)]
    for rel in paths:
        (workspace / rel).write_bytes(os.urandom(config.file_kib * 1024))
    cases = []
    for parallel in config.upload_parallel:
        progress(f"{target.kind}: {config.files} × {config.file_kib} KiB, {parallel} in flight")
        figures = _upload(target, credential, workspace, paths, parallel)
        cases.append(Case(f"{config.files} × {config.file_kib} KiB, {parallel} in flight", figures))
    if config.big_mib:
        progress(f"{target.kind}: one {config.big_mib} MiB file")
        with (workspace / "big.bin").open("wb") as handle:
            for _ in range(config.big_mib):
                handle.write(os.urandom(load.MIB))
        figures = _upload(target, credential, workspace, ["big.bin"], 1)
        cases.append(Case(f"one {config.big_mib} MiB file", figures))
    return cases


def _upload(
    target: Target, credential: str, workspace: Path, paths: list[str], parallel: int
) -> dict[str, Any]:
    workers = load.start_workers(
        load.upload_worker,
        [
            {
                "address": target.address,
                "credential": credential,
                "workspace": str(workspace),
                "paths": paths,
                "parallel": parallel,
                "chunk": load.MIB,
                "pid": target.pid,
            }
        ],
    )
    (result,) = workers.results(600)
    elapsed = result["elapsed_s"]
    return {
        "files": result["files"],
        "mb_per_s": round(result["bytes"] / elapsed / 1e6, 3),  # a small run is no 0.0
        "files_per_s": round(result["files"] / elapsed, 1),
        "server_us_per_file": round(result["cpu_s"] * 1e6 / max(1, result["files"])),
        "failed": result["failed"],
    }


RUNNERS: dict[str, Callable[[Target, BenchConfig, Progress], list[Case]]] = {
    "joins": scenario_joins,
    "rejoins": scenario_rejoins,
    "streams": scenario_streams,
    "storm": scenario_storm,
    "dispatch": scenario_dispatch,
    "upload": scenario_upload,
}


def run(
    scenarios: list[str], config: BenchConfig, *, baseline: bool, progress: Progress
) -> dict[str, Any]:
    """Run each scenario on a fresh hub (and a fresh bare server); the report as a dict."""
    import platform

    raise_fd_limit()
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "store": "postgresql"
            if (config.database_url or "").startswith("postgres")
            else "sqlite",
        },
        "scenarios": {},
    }
    if len(config.processes) > 1:
        report["machine"]["processes"] = list(config.processes)
    for name in scenarios:
        report["scenarios"][name] = []
        for processes in config.processes:
            with tempfile.TemporaryDirectory(prefix=f"cortex-bench-{name}-") as tmp:
                root = Path(tmp)
                with hub_target(root, config, config.interval_s, processes) as hub:
                    if processes > 1:
                        progress(f"hub: serve --processes {processes}")
                    cases = RUNNERS[name](hub, config, progress)
                for case in cases:
                    case.processes = processes
                if baseline and name in BARE_SCENARIOS:
                    with bare_target(root) as bare:
                        bare_cases = RUNNERS[name](bare, config, progress)
                    for case, other in zip(cases, bare_cases, strict=True):
                        case.bare = other.hub
            report["scenarios"][name].extend(case.as_dict() for case in cases)
    return report
