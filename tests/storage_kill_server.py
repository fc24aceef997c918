"""A minimal acking server over the real share journal, for the storage kill tests.

    python -m tests.storage_kill_server DB_URL SPOOL_DIR PORT_FILE

Listens on a free TCP port (written to PORT_FILE once storage is open), reads lines ``<n>``,
stores share n through ``open_storage_from_config(config).journal`` and answers ``ok <n>`` only
after ``put`` returned (exactly what the Stratum server does before acking a miner).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from poolserver.config import config_from_dict
from poolserver.storage_config import open_storage_from_config
from stratum.interfaces import AcceptedShare


def share(n: int) -> AcceptedShare:
    return AcceptedShare(
        account=f"kz{n % 17}",
        worker="rig",
        session_id="0000abcd",
        peer="127.0.0.1",
        job_id="1",
        height=1,
        difficulty=1.0,
        share_hash=n.to_bytes(32, "little"),
        is_block=False,
        created_at=datetime.now(UTC),
    )


async def main(url: str, spool: str, port_file: str) -> None:
    cfg = config_from_dict({"storage": {"url": url, "spool_dir": spool, "retry_interval_s": 0.2}})
    storage = await open_storage_from_config(cfg)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def one(n: int) -> None:
            await storage.journal.put(share(n))
            writer.write(f"ok {n}\n".encode())

        tasks = set()
        while line := await reader.readline():
            t = asyncio.create_task(one(int(line)))
            tasks.add(t)
            t.add_done_callback(tasks.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tmp = Path(port_file + ".tmp")
    tmp.write_text(str(port))
    tmp.rename(port_file)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
