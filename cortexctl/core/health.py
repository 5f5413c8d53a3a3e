"""`mesh status --check`: the mesh judged against thresholds, in one line with a nagios
exit code. Store-free, so a remote context judges the hub's snapshot the same way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cortexctl.core.views import HealthCheck, MeshSnapshot
from cortexctl.errors import CHECK_CRITICAL, CHECK_OK, CHECK_UNKNOWN, CHECK_WARNING

CHECK_LABELS = {
    CHECK_OK: "OK",
    CHECK_WARNING: "WARNING",
    CHECK_CRITICAL: "CRITICAL",
    CHECK_UNKNOWN: "UNKNOWN",
}


@dataclass(frozen=True)
class CheckThresholds:
    """Counts at or above which a check warns or is critical; None turns a level off."""

    warn_offline: int | None = 1  # nodes offline or stale (revoked ones do not count)
    crit_offline: int | None = None
    warn_failed_jobs: int | None = 1  # maintenance jobs whose last run failed
    crit_failed_jobs: int | None = None
    crit_dead_hubs: int | None = 1  # hubs whose lease lapsed without a clean stop
    min_hubs: int = 1  # fewer live hubs than this is critical


def _level(count: int, warn: int | None, crit: int | None) -> int:
    if crit is not None and count >= crit:
        return CHECK_CRITICAL
    if warn is not None and count >= warn:
        return CHECK_WARNING
    return CHECK_OK


def judge(snap: MeshSnapshot, dead_hubs: Sequence[str], thresholds: CheckThresholds) -> HealthCheck:
    """Judge a snapshot (with its jobs) against thresholds: offline/stale nodes, failed
    jobs, dead hubs."""
    dead = sorted(dead_hubs)
    down = [node.name for node in snap.nodes if node.status in ("offline", "stale")]
    failed = [f"{job.job}@{job.hub_id}" for job in snap.jobs if job.last_outcome == "failed"]
    problems: list[tuple[int, str]] = []
    level = _level(len(down), thresholds.warn_offline, thresholds.crit_offline)
    if level:
        problems.append((level, f"{len(down)} node(s) offline or stale: {', '.join(down[:5])}"))
    level = _level(len(failed), thresholds.warn_failed_jobs, thresholds.crit_failed_jobs)
    if level:
        problems.append((level, f"{len(failed)} job(s) failing: {', '.join(failed[:5])}"))
    level = _level(len(dead), None, thresholds.crit_dead_hubs)
    if level:
        problems.append((level, f"{len(dead)} dead hub(s): {', '.join(dead[:5])}"))
    if len(snap.hubs) < thresholds.min_hubs:
        problems.append(
            (CHECK_CRITICAL, f"{len(snap.hubs)} live hub(s), fewer than {thresholds.min_hubs}")
        )
    status = max((level for level, _ in problems), default=CHECK_OK)
    s = snap.summary
    counts = (
        f"{s['online_count']}/{s['node_count'] - s['revoked_count']} nodes online, "
        f"{len(snap.hubs)} hub(s), {s['running_tasks']} running, {s['pending_tasks']} pending"
    )
    details = "; ".join(text for _, text in sorted(problems, key=lambda p: -p[0]))
    perf = (
        f"online={s['online_count']} offline={len(down)} failed_jobs={len(failed)} "
        f"dead_hubs={len(dead)} hubs={len(snap.hubs)}"
    )
    summary = f"CORTEX {CHECK_LABELS[status]} - {details or counts}" + (
        f" ({counts})" if details else ""
    )
    return HealthCheck(
        exit_code=status,
        label=CHECK_LABELS[status],
        line=f"{summary} | {perf}",
        problems=[text for _, text in problems],
        offline_nodes=down,
        failed_jobs=failed,
        dead_hubs=dead,
        live_hubs=len(snap.hubs),
    )


def check_without_store(reason: str, *, missing: bool) -> HealthCheck:
    """The check's line when there is nothing to judge: no store where the settings point
    is CRITICAL (the mesh has no hub state at all), a store that cannot be read UNKNOWN."""
    status = CHECK_CRITICAL if missing else CHECK_UNKNOWN
    return HealthCheck(
        exit_code=status,
        label=CHECK_LABELS[status],
        line=f"CORTEX {CHECK_LABELS[status]} - {reason}",
        problems=[reason],
        offline_nodes=[],
        failed_jobs=[],
        dead_hubs=[],
        live_hubs=0,
    )
