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



# ---- cancel_and_wait: a stop() never swallows its own caller's cancellation ----------------


async def test_cancel_and_wait_absorbs_the_tasks_own_cancellation_and_raises_its_errors():
    from poolserver.aio import cancel_and_wait

    task = asyncio.create_task(asyncio.sleep(30))
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()
    await cancel_and_wait(task)  # already ended: nothing to do
    await cancel_and_wait(None)

    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    try:
        await cancel_and_wait(task)
    except RuntimeError as exc:
        assert str(exc) == "cleanup failed"
    else:
        raise AssertionError("the task's error was lost")


def _slow_to_wind_down_poller():
    """A DbPoller whose read, once cancelled, takes 0.2 s to end (a rollback, a close)."""
    from poolserver.telemetry import DbPoller

    async def read():
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.shield(asyncio.sleep(0.2))

    return DbPoller(read, interval_s=0.01)


async def test_a_stop_cancelled_while_it_waits_for_its_loop_is_cancelled():
    """Before: ``with suppress(CancelledError): await self._task`` swallowed the cancellation
    of the stop() itself (a stop under asyncio.timeout, the test runner cancelling leftovers),
    and the caller carried on as if it had not been cancelled."""
    poller = _slow_to_wind_down_poller()
    poller.start()
    await asyncio.sleep(0.05)  # the loop is inside read()
    stopping = asyncio.create_task(poller.stop())
    await asyncio.sleep(0.05)  # stop() waits for the loop to wind down
    stopping.cancel()
    await asyncio.gather(stopping, return_exceptions=True)
    assert stopping.cancelled()
    assert poller._task.done()


async def test_cleanup_after_an_earlier_cancellation_still_stops_the_loop():
    poller = _slow_to_wind_down_poller()
    poller.start()
    stopped = []

    async def body() -> None:
        try:
            await asyncio.sleep(30)
        finally:  # cleanup of a cancelled task: not cut short by the cancellation it handles
            await poller.stop()
            stopped.append(True)

    task = asyncio.create_task(body())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and stopped == [True] and poller._task.done()
