"""Background loops end when cancelled, even when their wake-up event is set in the same loop
turn as the cancellation (Python 3.11's ``asyncio.wait_for`` swallowed that cancellation: the
loop ran on and the ``stop()`` awaiting it hung for ever; a CI run timed out on it)."""

from __future__ import annotations

import asyncio

from poolserver.aio import wait_event
from tests.fake_bitcoind import FakeBitcoind
from tests.test_template_feed import _feed


async def test_wait_event_reports_set_or_timeout():
    ev = asyncio.Event()
    assert await wait_event(ev, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, ev.set)
    assert await wait_event(ev, 5) is True
    assert await wait_event(ev, 0) is True  # already set: no wait at all
    ev.clear()
    asyncio.get_running_loop().call_later(0.01, ev.set)
    assert await wait_event(ev, None) is True


async def _ends_when_cancelled(task: asyncio.Task, wake: asyncio.Event) -> None:
    for _ in range(3):
        await asyncio.sleep(0)  # the loop reaches its wait
    wake.set()
    task.cancel()  # same loop turn as the wake-up
    async with asyncio.timeout(5):  # a swallowed cancellation: the loop runs on, this times out
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


async def test_a_waiting_loop_is_cancelled_even_when_woken_in_the_same_turn():
    wake = asyncio.Event()
    turns = 0

    async def loop() -> None:
        nonlocal turns
        while True:
            await wait_event(wake, 30)
            wake.clear()
            turns += 1

    task = asyncio.create_task(loop())
    await _ends_when_cancelled(task, wake)
    assert turns == 0


async def test_template_feed_stops_when_a_refresh_is_requested_as_it_is_cancelled():
    node = await FakeBitcoind().start()
    feed, client = _feed(node, longpoll=False)
    task = asyncio.create_task(feed.run())
    try:
        await feed.wait_for_job(5)
        await asyncio.sleep(0.05)  # parked in the refresh wait
        await _ends_when_cancelled(task, feed._wake)
    finally:
        task.cancel()
        await client.close()
        await node.stop()

