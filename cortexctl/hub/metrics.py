"""Prometheus metrics, read from the hub's own state at scrape time.

Nothing is counted on the hot paths beyond the plain integers the hub keeps anyway (a
heartbeat is a dictionary update plus ``+= 1``); this collector turns them into metric
families only when Prometheus asks. It serves from its own thread, off the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
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


class HubCollector(Collector):
    def __init__(self, runtime: HubRuntime, scheduler: Scheduler, servicer: Any) -> None:
        self.rt = runtime
        self.scheduler = scheduler
        self.servicer = servicer

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
        runs = CounterMetricFamily("cortex_job_runs", "Maintenance job runs.", labels=["job"])
        failures = CounterMetricFamily(
            "cortex_job_failures", "Maintenance job failures.", labels=["job"]
        )
        for status in self.scheduler.status():
            runs.add_metric([status.name], status.runs)
            failures.add_metric([status.name], status.failures)
        yield runs
        yield failures
        yield GaugeMetricFamily(
            "cortex_credential_cache_entries",
            "Verified node credentials kept in memory.",
            value=len(rt.credentials),
        )


def start_metrics_server(address: str, collector: HubCollector) -> Any:
    """Serve /metrics on ``address`` from a thread; returns the server (call .shutdown())."""
    from prometheus_client import start_http_server

    host, _, port = address.rpartition(":")
    registry = CollectorRegistry()
    registry.register(collector)
    server, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    return server
