"""Prometheus metrics, read from the hub's own state at scrape time.

Nothing is counted on the hot paths beyond the plain integers the hub keeps anyway (a
heartbeat is a dictionary update plus ``+= 1``); this collector turns them into metric
families only when Prometheus asks. It serves from its own thread, off the event loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from cortexctl.hub.runtime import HubRuntime
from cortexctl.hub.scheduler import Scheduler


@dataclass
class AdminStats:
    """The admin API's counters, kept by its interceptor: calls by method and status code,
    their time, and the calls refused by authentication or role."""

    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    denials: Counter[tuple[str, str]] = field(default_factory=Counter)

    def record(self, method: str, code: str, seconds: float) -> None:
        self.calls[method, code] += 1
        self.seconds[method] = self.seconds.get(method, 0.0) + seconds

    def denied(self, method: str, code: str) -> None:
        self.denials[method, code] += 1

    def families(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "cortex_admin_calls",
            "Admin API calls by method and status code.",
            labels=["method", "code"],
        )
        for (method, code), count in sorted(self.calls.items()):
            calls.add_metric([method, code], count)
        yield calls
        latency = SummaryMetricFamily(
            "cortex_admin_call_seconds",
            "Time of admin API calls (a stream's whole life for streaming ones).",
            labels=["method"],
        )
        per_method = Counter[str]()
        for (method, _), count in self.calls.items():
            per_method[method] += count
        for method, count in sorted(per_method.items()):
            latency.add_metric([method], count, self.seconds.get(method, 0.0))
        yield latency
        denials = CounterMetricFamily(
            "cortex_admin_denials",
            "Admin API calls refused (UNAUTHENTICATED or PERMISSION_DENIED).",
            labels=["method", "code"],
        )
        for (method, code), count in sorted(self.denials.items()):
            denials.add_metric([method, code], count)
        yield denials


class HubCollector(Collector):
    def __init__(
        self,
        runtime: HubRuntime,
        scheduler: Scheduler,
        servicer: Any,
        connections: Any = None,
        admin: AdminStats | None = None,
    ) -> None:
        self.rt = runtime
        self.scheduler = scheduler
        self.servicer = servicer
        self.connections = connections
        self.admin = admin

    def collect(self) -> Iterator[Metric]:
        rt = self.rt
        yield GaugeMetricFamily(
            "cortex_connected_nodes", "Nodes with an open TaskStream.", value=len(rt.streams)
        )
        handshakes = CounterMetricFamily(
            "cortex_handshakes", "Handshakes by outcome.", labels=["outcome"]
        )
        for outcome, count in sorted(self.servicer.handshakes.items()):
            handshakes.add_metric([outcome], count)
        yield handshakes
        yield CounterMetricFamily(
            "cortex_heartbeats", "Heartbeats received.", value=rt.streams.heartbeats
        )
        tasks = CounterMetricFamily(
            "cortex_task_updates", "Task states reported by nodes.", labels=["state"]
        )
        for state, count in sorted(self.servicer.task_updates.items()):
            tasks.add_metric([state], count)
        yield tasks
        monitor = rt.loop_monitor
        yield CounterMetricFamily(
            "cortex_hub_stalls", "Event-loop stalls of the hub itself.", value=monitor.stall_count
        )
        yield GaugeMetricFamily(
            "cortex_hub_worst_loop_lag_seconds",
            "The longest event-loop lag seen.",
            value=monitor.worst_lag_s,
        )
        yield CounterMetricFamily(
            "cortex_stream_fresh_graces",
            "Watchdog checks that spared a stream silent only across a stall of the hub.",
            value=monitor.fresh_graces,
        )
        sync = getattr(self.servicer, "sync_files", None)
        if sync is not None:
            yield CounterMetricFamily(
                "cortex_sync_bytes",
                "File bytes received by SyncFile.",
                value=getattr(sync, "bytes_received", 0),
            )
            yield GaugeMetricFamily(
                "cortex_uploads_in_flight",
                "SyncFile uploads in progress.",
                value=getattr(sync, "in_flight", 0),
            )
            locks = getattr(sync, "locks", None)
            yield GaugeMetricFamily(
                "cortex_sync_locks",
                "Per-file locks held or waited for.",
                value=len(locks) if locks is not None else 0,
            )
        yield GaugeMetricFamily(
            "cortex_store_queue_depth",
            "Store and file calls submitted and not yet finished.",
            value=rt.executor.queued,
        )
        yield SummaryMetricFamily(
            "cortex_store_call_seconds",
            "Latency of store and file calls, queueing included.",
            count_value=rt.executor.calls,
            sum_value=rt.executor.total_latency_s,
        )
        yield from store_health_families(rt)
        runs = CounterMetricFamily("cortex_job_runs", "Maintenance job runs.", labels=["job"])
        failures = CounterMetricFamily(
            "cortex_job_failures", "Maintenance job failures.", labels=["job"]
        )
        for status in self.scheduler.status():
            runs.add_metric([status.name], status.runs)
            failures.add_metric([status.name], status.failures)
        yield runs
        yield failures
        opens = getattr(self.servicer, "opens", None)
        if opens is not None:
            yield CounterMetricFamily(
                "cortex_stream_open_batches",
                "Store transactions that opened streams (each opens one or more).",
                value=opens.batches,
            )
            yield CounterMetricFamily(
                "cortex_stream_opens_batched",
                "Stream opens done in those transactions.",
                value=opens.items,
            )
        yield CounterMetricFamily(
            "cortex_oversized_messages",
            "Node messages over the announced max_message_bytes.",
            value=getattr(self.servicer, "oversized_messages", 0),
        )
        if sync is not None:
            space = getattr(sync, "space", None)
            refusals = CounterMetricFamily(
                "cortex_upload_refused",
                "Uploads refused by a node quota or the free-space reserve.",
                labels=["reason"],
            )
            refusals.add_metric(["quota"], getattr(sync, "refused_quota", 0))
            refusals.add_metric(["free_space"], getattr(space, "refusals", 0))
            yield refusals
        conns = self.connections
        if conns is not None:
            yield GaugeMetricFamily(
                "cortex_open_sockets", "Sockets the hub has open.", value=conns.sockets
            )
            yield GaugeMetricFamily(
                "cortex_connection_cap",
                "Incoming connections the hub accepts at once.",
                value=conns.cap,
            )
            yield GaugeMetricFamily(
                "cortex_fd_limit", "The hub's open-file limit (soft).", value=conns.fd_limit
            )
            yield GaugeMetricFamily(
                "cortex_shedding_connections",
                "1 while the hub is at its connection cap and closes new connections.",
                value=1 if conns.shedding else 0,
            )
            yield CounterMetricFamily(
                "cortex_shedding_checks",
                "Seconds (watcher runs) the hub spent at its connection cap.",
                value=conns.shedding_checks,
            )
        yield CounterMetricFamily(
            "cortex_hub_fences",
            "Times this hub found another hub had taken it over and fenced itself.",
            value=rt.fences,
        )
        yield GaugeMetricFamily(
            "cortex_hub_fenced",
            "1 while the hub is fenced (not serving until it rejoins with a new epoch).",
            value=1 if rt.fenced else 0,
        )
        yield GaugeMetricFamily(
            "cortex_hub_epoch",
            "The membership epoch (fencing token) this hub holds.",
            value=rt.epoch,
        )
        yield GaugeMetricFamily(
            "cortex_credential_cache_entries",
            "Verified node credentials kept in memory.",
            value=len(rt.credentials),
        )
        if self.admin is not None:
            yield from self.admin.families()


def store_health_families(rt: HubRuntime) -> Iterator[Metric]:
    """How the store answers this hub's transactions (``StoreHealth``), and its ballast."""
    health = rt.executor.health
    yield GaugeMetricFamily(
        "cortex_store_healthy",
        "1 while the store answers the hub's transactions, 0 while every one fails.",
        value=1 if health.healthy else 0,
    )
    yield GaugeMetricFamily(
        "cortex_store_failing_seconds",
        "How long every store transaction has failed (0 while the store works).",
        value=health.failing_seconds(),
    )
    yield GaugeMetricFamily(
        "cortex_store_consecutive_failures",
        "Store transactions failed in a row.",
        value=health.consecutive_failures,
    )
    yield CounterMetricFamily(
        "cortex_store_failures", "Store transactions that failed.", value=health.failures
    )
    ballast = rt.ballast
    if ballast is not None:
        yield GaugeMetricFamily(
            "cortex_store_ballast_released",
            "1 while the store's disk ballast is released (the disk filled; not put back yet).",
            value=1 if ballast.released else 0,
        )
        yield CounterMetricFamily(
            "cortex_store_ballast_releases",
            "Times the store's disk ballast was released on a full disk.",
            value=ballast.releases,
        )
    if health.last_success_unix is not None:
        yield GaugeMetricFamily(
            "cortex_store_last_success_timestamp_seconds",
            "Unix time of the last store transaction that worked.",
            value=health.last_success_unix,
        )


def start_metrics_server(address: str, collector: HubCollector) -> Any:
    """Serve /metrics on ``address`` from a thread; returns the server (call .shutdown())."""
    from prometheus_client import start_http_server

    host, _, port = address.rpartition(":")
    registry = CollectorRegistry()
    registry.register(collector)
    server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    return server
