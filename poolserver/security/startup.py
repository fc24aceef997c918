"""The running pool's security log: record the configuration it starts with, start the writer."""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from poolserver.config import Config, ConfigError
from poolserver.security import config_state
from poolserver.security.log import NewEvent, SecurityLog
from poolserver.security.writer import SecurityEventWriter

log = logging.getLogger(__name__)


def check_security_config(config: Config) -> None:
    sc = config.security
    if not isinstance(sc.queue_size, int) or sc.queue_size < 1:
        raise ConfigError(f"security.queue_size: must be an integer >= 1, got {sc.queue_size!r}")
    if sc.flush_interval_s <= 0:
        raise ConfigError(f"security.flush_interval_s: must be > 0, got {sc.flush_interval_s}")
    if sc.flood_report_s <= 0:
        raise ConfigError(f"security.flood_report_s: must be > 0, got {sc.flood_report_s}")


async def record_config_start(
    seclog: SecurityLog, config: Config, at: datetime | None = None
) -> config_state.ConfigChange:
    """A ``config.start`` event: the config hash, the keys changed since the last start (by
    fingerprint; secrets never in clear) and every key's fingerprint for the next start."""
    prints = config_state.fingerprints(config)
    last = await seclog.last_of_kind("config.start")
    previous: dict[str, str] | None = None
    if last is not None:
        previous = json.loads(last.new).get("fingerprints")
    change = config_state.compare(prints, previous)
    fields: dict[str, Any] = {
        "config_hash": change.config_hash,
        "previous_hash": change.previous_hash,
        "first_start": change.previous_hash is None,
        "changed": list(change.changed),
        "added": list(change.added),
        "removed": list(change.removed),
        "host": socket.gethostname(),
        "fingerprints": prints,
    }
    await seclog.append([NewEvent(at or datetime.now(UTC), "config.start", fields)])
    if change.previous_hash is None:
        log.info("security log: first recorded start, config %s", change.config_hash[:16])
    elif change.unchanged:
        log.info(
            "security log: config unchanged since the last start (%s)", change.config_hash[:16]
        )
    else:
        log.warning(
            "config changed since the last start: %s",
            ", ".join(change.changed + change.added + change.removed),
        )
    return change


async def start_security_log(engine: AsyncEngine, config: Config) -> SecurityEventWriter:
    check_security_config(config)
    seclog = SecurityLog(engine)
    await record_config_start(seclog, config)
    sc = config.security
    writer = SecurityEventWriter(
        seclog, queue_size=sc.queue_size, flush_interval_s=sc.flush_interval_s
    )
    writer.start()
    return writer
