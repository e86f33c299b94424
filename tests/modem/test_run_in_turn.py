"""Work from outside on a modem's port goes through its worker, in turn: after what came
before it, its outcome returned to the caller, skipped when the caller gave up first."""

from __future__ import annotations

import asyncio

import pytest

from agent.errors import CommandFailed, PortGone
from agent.modem.session import URC_QUEUE_LIMIT, AtSession
from agent.modem.worker import URCS_IN_INBOX
from agent.protocol.urc import parse_urc
from agent.store import Store
from tests.modem.conftest import StartHub, ready, running


async def test_work_runs_in_turn_and_a_cancelled_turn_is_skipped(
    start_hub: StartHub, store: Store
) -> None:
    hub = await start_hub(count=1, profile="ec25")
    release = asyncio.Event()
    order: list[str] = []

    async def blocking(session: AtSession) -> str:
        order.append("first")
        await release.wait()  # holds the worker's turn, as a long send would
        return "done"

    async def never(session: AtSession) -> None:
        order.append("skipped work ran")

    async def answered(session: AtSession) -> list[str]:
        order.append("third")
        return await session.command("AT+CGMI")

    async with running(hub, 0, store) as (worker, watch, _):
        await watch.until(ready)
        first = asyncio.create_task(worker.run_in_turn(blocking))
        second = asyncio.create_task(worker.run_in_turn(never))
        third = asyncio.create_task(worker.run_in_turn(answered))
        await asyncio.sleep(0)  # all three queued behind each other
        second.cancel()  # the caller gives up before its turn
        release.set()
        assert await first == "done"
        assert await third == ["Quectel"]
        with pytest.raises(asyncio.CancelledError):
            await second

        async def refused(session: AtSession) -> None:
            await session.command("AT+CMGR=999")

        with pytest.raises(CommandFailed):
            await worker.run_in_turn(refused)  # an answer: the worker goes on
        assert await worker.run_in_turn(answered) == ["Quectel"]
        never_released = asyncio.Event()

        async def stuck(session: AtSession) -> None:
            await never_released.wait()

        pending = asyncio.create_task(worker.run_in_turn(stuck))
        queued = asyncio.create_task(worker.run_in_turn(answered))
        await asyncio.sleep(0)
    # The worker stopped: the work it was doing and the work still queued both end.
    with pytest.raises(PortGone):
        await pending
    with pytest.raises(PortGone):
        await queued
    assert order[:2] == ["first", "third"]
    assert "skipped work ran" not in order


async def test_urcs_flooding_a_busy_worker_stay_within_the_inbox_bound(
    start_hub: StartHub, store: Store
) -> None:
    """While the worker is busy (a long send in its turn), a port printing URCs fills the
    session's bounded queue, where the excess is dropped and counted, never the inbox."""
    hub = await start_hub(count=1, profile="ec25")
    release = asyncio.Event()
    busy = asyncio.Event()

    async def long_send(session: AtSession) -> None:
        busy.set()
        await release.wait()

    async with running(hub, 0, store) as (worker, watch, _):
        await watch.until(ready)
        turn = asyncio.create_task(worker.run_in_turn(long_send))
        await asyncio.wait_for(busy.wait(), 5)
        session = worker.session
        flood = URC_QUEUE_LIMIT + 2 * URCS_IN_INBOX
        for n in range(flood):
            session._dispatch(parse_urc(f"+CREG: {1 + n % 2}"))  # as if read from the port
            await asyncio.sleep(0)  # the forwarder's chance to move what it may
        assert worker._inbox.qsize() <= URCS_IN_INBOX
        assert session.urcs.qsize() == URC_QUEUE_LIMIT
        assert session.urcs_dropped == flood - URC_QUEUE_LIMIT - URCS_IN_INBOX
        release.set()
        await turn

        async def nothing(_session: AtSession) -> None:
            pass

        async def caught_up() -> None:  # and it handles all it kept
            # Work put in turn runs after every URC queued before it.
            while not (session.urcs.empty() and worker._inbox.empty()):
                await worker.run_in_turn(nothing)

        await asyncio.wait_for(caught_up(), 10)
