"""One Deadline from the RPC to the store: the executor and the database give up at the
same instant, and a database timeout under a deadline is reported as that deadline."""

from __future__ import annotations

import asyncio
import time

import pytest

from cortexctl.core import invites
from cortexctl.core.clock import Deadline
from cortexctl.errors import Unavailable
from cortexctl.hub.executor import StoreExecutor, rpc_deadline
from cortexctl.store.engine import Store
from tests.integration.test_store_stall import stalled_store


def test_a_deadline_is_one_instant_on_the_monotonic_clock() -> None:
    before = time.monotonic()
    deadline = Deadline.after(2.0)
    assert before + 2.0 <= deadline.at <= time.monotonic() + 2.0
    assert 0 < deadline.remaining() <= 2.0
    assert 1 <= deadline.remaining_ms() <= 2000
    assert not deadline.passed()
    assert Deadline.after(-1).passed() and Deadline.after(-1).remaining_ms() == 1
    assert Deadline.after(1) < Deadline.after(5)


class RpcContext:
    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining


def test_an_rpc_deadline_is_what_its_caller_left_capped_by_the_hub() -> None:
    assert rpc_deadline(RpcContext(0.2), 2.0).remaining() <= 0.2  # the client's is sooner
    assert 1.0 < rpc_deadline(RpcContext(60.0), 2.0).remaining() <= 2.0  # the hub's cap
    assert 1.0 < rpc_deadline(RpcContext(None), 2.0).remaining() <= 2.0  # no client deadline


def test_the_store_gives_up_at_the_deadline_and_says_so(
    fresh_store: Store, database_url: str
) -> None:
    with (
        stalled_store(database_url),
        pytest.raises(Unavailable) as caught,
        fresh_store.session(write=True, deadline=Deadline.after(0.3)) as session,
    ):
        invites.create_invite(session, ttl_s=60)
    assert "did not answer within the deadline" in str(caught.value)
    with fresh_store.session(write=True, deadline=Deadline.after(30)) as session:
        invites.create_invite(session, ttl_s=60)  # and works again once the lock is gone


def test_the_executor_and_the_store_share_one_deadline(
    fresh_store: Store, database_url: str
) -> None:
    executor = StoreExecutor(fresh_store, workers=1)

    async def call() -> None:
        await executor.session(
            invites.create_invite, write=True, deadline=Deadline.after(0.3), ttl_s=60
        )

    try:
        with stalled_store(database_url), pytest.raises(Unavailable) as caught:
            asyncio.run(call())
        assert "did not answer within" in str(caught.value)
        asyncio.run(call())
    finally:
        executor.shutdown()
