"""``StratumServer.shutdown()`` ends in bounded time even when a miner stops reading.

A session is closed gracefully at shutdown (its last lines, ``client.reconnect`` among them, are
flushed first). A miner that does not read (a frozen ASIC, a zero TCP window) never lets that
flush finish: the connection stayed open after shutdown on Python 3.11, and on Python >= 3.12,
where ``Server.wait_closed()`` waits for every connection, shutdown never returned at all. The
server now gives the flushes a short grace and then aborts what is still buffered."""

from __future__ import annotations

import asyncio
import socket

from tests.conftest import wait_until
from tests.stratum_support import start_server


async def test_shutdown_aborts_a_connection_whose_miner_does_not_read():
    # under the slow-reader cap (which aborts at once): the bytes a stalled miner's connection
    # holds when shutdown comes
    server, port, _sink, _blocks = await start_server(max_write_buffer_bytes=64 << 20)
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", port))  # never reads a byte
    try:
        await wait_until(lambda: len(server.sessions) == 1)
        (session,) = server.sessions
        transport = session.transport
        transport.write(b"x" * (8 << 20))  # far more than the kernel buffers can take
        assert transport.get_write_buffer_size() > 0
        async with asyncio.timeout(30):  # the grace is a few seconds; never hangs
            await server.shutdown()
        # nothing left queued for a miner that will never read it: the connection is gone
        assert transport.get_write_buffer_size() == 0
        assert transport.is_closing()
    finally:
        stuck.close()


async def test_shutdown_still_flushes_the_reconnect_to_a_miner_that_reads():
    from tests.stratum_client import StratumClient

    server, port, _sink, _blocks = await start_server()
    c = await StratumClient.connect("127.0.0.1", port)
    try:
        await c.cgminer("aigerim.s19")
        await server.shutdown()
        await c.wait_closed()
        assert any(n.get("method") == "client.reconnect" for n in c.notifications)
    finally:
        await c.close()
