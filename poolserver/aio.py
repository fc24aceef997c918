"""Small asyncio helpers the long-running loops share.

``wait_event`` exists because of a Python 3.11 defect: ``asyncio.wait_for(event.wait(), t)``
swallows a cancellation that arrives in the same loop turn as the event being set (the inner
wait has finished, so wait_for returns its result instead of raising CancelledError;
python/cpython#86296, fixed in 3.12 by rewriting wait_for on top of ``asyncio.timeout``). A
background loop written ``while True: await wait_for(wake.wait(), t)`` then never ends, and the
``stop()`` that cancelled it and awaits it hangs for ever: a pool that cannot shut down, a test
run that never finishes. ``asyncio.timeout`` keeps the cancellation: no inner task is created.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass (``None``: no limit).

    True if the event is set, False on timeout. A cancellation is never lost."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
