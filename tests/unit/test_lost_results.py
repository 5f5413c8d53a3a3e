"""Results acknowledged, lost streams adopted, stalls measured, tasks contained: the core
and agent parts of issue 15, without a server."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cortexctl.agent.reaper import Containment, TaskRecord, boot_id, proc_stat
from cortexctl.agent.unacked import UnackedResults
from cortexctl.core import hubs, journal, nodes
from cortexctl.errors import Fenced, Unavailable
from cortexctl.hub import runtime as runtime_module
from cortexctl.hub.auth import CredentialCache
from cortexctl.hub.runtime import HubOptions, HubRuntime
from cortexctl.hub.stalls import ConditionLog, LoopMonitor
from cortexctl.hub.streams import StreamRegistry
from cortexctl.proto import mesh_pb2 as pb
from cortexctl.store.engine import Store
from tests.unit.test_core import DEFAULTS, join, new_invite


def member(store: Store, hub_id: str) -> hubs.Member:
    """The hub as a member of the store (registered once; its epoch as it stands)."""
    with store.session(write=True) as session:
        row = hubs.list_hubs(session)
        epoch = next((h.epoch for h in row if h.id == hub_id), 0)
        if not epoch:
            epoch = hubs.register_hub(session, hub_id, f"{hub_id}:1", 60.0)
    return hubs.Member(hub_id, epoch)


def dispatched(store: Store, stream_id: str, count: int = 1, hub_id: str = "h1") -> list[str]:
    h1 = member(store, hub_id)
    with store.session() as session:
        node = nodes.resolve_node(session, "n1")
        for _ in range(count):
            journal.submit_task(session, node, script="true", defaults=DEFAULTS)
        claimed = journal.claim_pending(
            session, node, hub_id=h1.hub_id, epoch=h1.epoch, stream_id=stream_id, defaults=DEFAULTS
        )
        return [task.id for task in claimed]


def test_the_same_result_twice_changes_nothing_and_is_accepted_again(fresh_store: Store) -> None:
    joined = join(fresh_store, new_invite(fresh_store, sandbox="permissive"))
    (task_id,) = dispatched(fresh_store, "s1")
    node_id = joined.node.id
    with fresh_store.session() as session:
        first = journal.apply_update(session, node_id, task_id, journal.SUCCEEDED, stdout=b"a")
        again = journal.apply_update(session, node_id, task_id, journal.SUCCEEDED, stdout=b"b")
        other = journal.apply_update(session, node_id, task_id, journal.FAILED)
        foreign = journal.apply_update(session, "nd_other", task_id, journal.SUCCEEDED)
        assert (first.changed, first.accepted) == (True, True)
        assert (again.changed, again.accepted, again.state) == (False, True, "succeeded")
        assert journal.get_task(session, task_id).stdout == "a"  # the first copy stands
        assert (other.accepted, other.state) == (False, "succeeded")
        assert "already ended succeeded" in other.reason
        assert not foreign.accepted and "no task" in foreign.reason


def test_a_result_for_a_task_failed_after_the_grace_is_refused_with_the_reason(
    fresh_store: Store,
) -> None:
    joined = join(fresh_store, new_invite(fresh_store, sandbox="permissive"))
    (task_id,) = dispatched(fresh_store, "s1")
    h1 = member(fresh_store, "h1")
    with fresh_store.session() as session:
        assert journal.fail_stream_tasks(session, ["s1"], "did not come back", member=h1) == 1
        late = journal.apply_update(session, joined.node.id, task_id, journal.SUCCEEDED)
    assert (late.accepted, late.state) == (False, "failed")
    assert "did not come back" in late.reason


def test_a_node_back_on_a_new_stream_adopts_what_it_holds_and_the_rest_fails(
    fresh_store: Store,
) -> None:
    joined = join(fresh_store, new_invite(fresh_store, sandbox="permissive"))
    held, lost = dispatched(fresh_store, "old", count=2)
    (fresh,) = dispatched(fresh_store, "new")  # sent on the new stream before its heartbeat
    h1, h2 = member(fresh_store, "h1"), member(fresh_store, "h2")
    with fresh_store.session() as session:
        node = nodes.resolve_node(session, "n1")
        queued = journal.submit_task(session, node, script="later", defaults=DEFAULTS).id
        adoption = journal.adopt_tasks(
            session,
            joined.node.id,
            stream_id="new",
            member=h2,
            held={held},
            reason_lost="came back without the task",
        )
        assert (adoption.adopted, adoption.lost) == ([held], [lost])
        # The grace of the old stream ends: nothing is left on it to fail.
        assert journal.fail_stream_tasks(session, ["old"], "grace over", member=h1) == 0
        states = {t: journal.get_task(session, t).state for t in (held, lost, fresh, queued)}
        assert journal.get_task(session, held).hub_id == "h2"
        assert "without the task" in journal.get_task(session, lost).error
    assert states == {held: "dispatched", lost: "failed", fresh: "dispatched", queued: "pending"}


def test_stream_end_fails_only_in_flight_tasks_and_unsent_ones_go_back_to_pending(
    fresh_store: Store,
) -> None:
    join(fresh_store, new_invite(fresh_store, sandbox="permissive"))
    sent, unsent = dispatched(fresh_store, "s1", count=2)
    h1 = member(fresh_store, "h1")
    with fresh_store.session() as session:
        node = nodes.resolve_node(session, "n1")
        queued = journal.submit_task(session, node, script="q", defaults=DEFAULTS).id
        assert journal.in_flight_streams(session, "h1") == {"s1"}
        assert journal.requeue_unsent(session, [unsent], "s1", member=h1) == 1
        assert journal.fail_stream_tasks(session, ["s1"], "lost", member=h1) == 1
        assert journal.get_task(session, sent).state == "failed"
        assert journal.get_task(session, unsent).state == "pending"
        assert journal.get_task(session, queued).state == "pending"


def test_loop_monitor_sees_a_stall_and_counts_silence_from_its_end() -> None:
    monitor = LoopMonitor(threshold_s=0.05, tick_s=0.01)
    heard = time.monotonic()
    monitor.tick()
    time.sleep(0.1)  # the "stall": no tick for longer than the threshold
    assert monitor.stalled_now() and monitor.quiet_since(heard) is None
    monitor.tick()
    assert monitor.stall_count == 1 and monitor.stalls[-1].seconds >= 0.05
    quiet = monitor.quiet_since(heard)
    assert quiet is not None and quiet < 0.05  # a fresh grace from the stall's end


def test_condition_log_logs_a_repeating_failure_once_with_a_count(caplog: Any) -> None:
    caplog.set_level(logging.INFO)
    conditions = ConditionLog(logging.getLogger("test.conditions"), "writing presence")
    for _ in range(30):
        conditions.failed("database or disk is full")
    conditions.failed("database is locked")
    conditions.ok()
    text = caplog.text
    assert text.count("writing presence failed: database or disk is full") == 1
    assert "repeated 30 time(s)" in text
    assert "works again after 1 failure(s)" in text


def test_unacked_results_survive_a_restart_until_acknowledged(tmp_path: Path) -> None:
    results = UnackedResults(tmp_path)
    update = pb.TaskUpdate(task_id="tk_1", state=pb.SUCCEEDED, stdout=b"out")
    results.keep(update)
    assert [u.task_id for u in results.all()] == ["tk_1"]
    assert results.due(60.0) == []  # just sent
    assert [u.task_id for u in results.due(0.0)] == ["tk_1"]
    again = UnackedResults(tmp_path)  # a new agent process
    assert again.load() == 1 and "tk_1" in again
    assert again.all()[0].stdout == b"out"
    assert again.acknowledged("tk_1") and not again.acknowledged("tk_1")
    assert UnackedResults(tmp_path).load() == 0
    assert [p.name for p in (tmp_path / "results").iterdir()] == []


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


@linux_only
def test_leftovers_of_a_previous_run_are_killed_but_a_reused_pid_is_not(tmp_path: Path) -> None:
    containment = Containment(tmp_path, mode="pgroup")
    ours = subprocess.Popen(["sleep", "60"], start_new_session=True)
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        ours_stat, other_stat = proc_stat(ours.pid), proc_stat(other.pid)
        assert ours_stat and other_stat
        containment.save(TaskRecord("tk_ours", ours.pid, ours_stat[1], boot_id()))
        # A record whose pid is now another process (different start time): never killed.
        containment.save(TaskRecord("tk_reused", other.pid, other_stat[1] - 1, boot_id()))
        found = {left.task_id: left.killed for left in containment.reap_leftovers()}
        assert found == {"tk_ours": 1, "tk_reused": 0}
        assert ours.wait(10) == -9
        assert other.poll() is None
        assert list((tmp_path / "tasks").iterdir()) == []
    finally:
        for proc in (ours, other):
            proc.kill()
            proc.wait()


@linux_only
def test_containment_wraps_the_argv_with_a_parent_death_signal(tmp_path: Path) -> None:
    containment = Containment(tmp_path, mode="pgroup")
    contained = containment.prepare("tk_x")
    argv = contained.wrap(["/bin/true"])
    assert argv[-1] == "/bin/true"
    if containment.tools[1]:
        assert argv[:3] == [containment.tools[1], "--pdeathsig", "KILL"]
    if os.geteuid() == 0 and Containment(tmp_path).uses_cgroups:
        cgroup = Containment(tmp_path).prepare("tk_y")
        try:
            assert "cgroup.procs" in " ".join(cgroup.wrap(["/bin/true"]))
        finally:
            cgroup.finished()


class FlakyStore:
    """Stands in for the hub's executor: the store fails ``failing`` times, then works."""

    def __init__(self, failing: int, fence_at: int | None = None) -> None:
        self.failing = failing
        self.fence_at = fence_at
        self.calls = 0

    async def session(self, fn: Any, *args: Any, **kwargs: Any) -> int:
        self.calls += 1
        if self.fence_at is not None and self.calls >= self.fence_at:
            raise Fenced("taken over", epoch=1)
        if self.calls <= self.failing:
            raise Unavailable("cannot use the store sqlite:///x.db: database or disk is full")
        return 3


def flaky_runtime(store: FlakyStore) -> HubRuntime:
    executor: Any = store
    return HubRuntime(
        options=HubOptions(hub_id="h1"),
        executor=executor,
        streams=StreamRegistry("h1", 1.0),
        credentials=CredentialCache(executor, 1.0),
    )


def test_a_lost_nodes_tasks_are_failed_once_the_store_recovers_however_long_it_failed(
    monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    # Far more failures than the old fixed retries (six tries over about 15 s) took.
    monkeypatch.setattr(runtime_module, "FAIL_RETRY_FIRST_S", 0.001)
    monkeypatch.setattr(runtime_module, "FAIL_RETRY_CAP_S", 0.004)
    caplog.set_level(logging.INFO)
    store = FlakyStore(failing=40)
    failed = asyncio.run(flaky_runtime(store).fail_with_retries(lambda s: 0, "tasks", "later"))
    assert (failed, store.calls) == (3, 41)
    assert caplog.text.count("failed: cannot use the store") == 1  # logged once ...
    assert "works again after 40 failure(s)" in caplog.text  # ... with a count
    assert "journal fail" not in caplog.text  # no operator needed


def test_failing_a_lost_nodes_tasks_stops_when_fenced_or_at_the_drains_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime_module, "FAIL_RETRY_FIRST_S", 0.001)
    monkeypatch.setattr(runtime_module, "FAIL_RETRY_CAP_S", 0.004)
    fenced = FlakyStore(failing=1000, fence_at=5)
    assert asyncio.run(flaky_runtime(fenced).fail_with_retries(lambda s: 0, "t", "w")) == 0
    assert fenced.calls == 5  # the hub that took over decides those tasks
    bounded = FlakyStore(failing=10**9)
    rt = flaky_runtime(bounded)
    assert asyncio.run(rt.fail_with_retries(lambda s: 0, "t", "w", give_up_after_s=0.05)) == 0
    assert bounded.calls >= 2
