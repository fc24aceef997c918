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
from typing import Any


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


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended (``None`` or an ended task: nothing to do).

    The task's own cancellation is absorbed; a cancellation of the *caller* that arrives while
    it waits is not. The pattern this replaces, ``task.cancel()`` then ``await task`` inside
    ``contextlib.suppress(CancelledError)``, swallowed both: a ``stop()`` cancelled while it
    waited for a background loop (a stop bounded by ``asyncio.timeout``, the test runner
    cancelling what is left) ran on as if nothing had happened. A cancellation the caller had
    already received before calling this (cleanup in an ``except``/``finally``) does not cut
    that cleanup short. Any other exception the task ended with is raised."""
    if task is None or task.done():
        return
    current = asyncio.current_task()
    before = current.cancelling() if current is not None else 0
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > before:
            raise  # the caller was cancelled while waiting
        if not task.done():
            raise
