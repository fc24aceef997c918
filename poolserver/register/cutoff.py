"""Wiring: close the live Stratum sessions of a miner that lost its standing.

``connect_cutoff(events, server)`` subscribes to ``RegisterEvents``; for each ``StandingChange``
every session that authorized a worker of that account is sent ``client.show_message`` with the
reason and closed (reason label ``license_<state>``). Reconnects are then refused by
``RegisterAccountPolicy.authorize``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from poolserver.register.events import RegisterEvents, StandingChange
from stratum.server import StratumServer

log = logging.getLogger(__name__)


def close_sessions_of(server: StratumServer, change: StandingChange) -> int:
    closed = 0
    for session in list(server.sessions):
        if any(account == change.account for account, _ in session.workers.values()):
            session.show_message(f"qazpool: {change.message}")
            session.close(f"license_{change.state}")
            closed += 1
    log.warning("closed %d live session(s) of %s: license %s", closed, change.account, change.state)
    return closed


def connect_cutoff(events: RegisterEvents, server: StratumServer) -> Callable[[], None]:
    """Subscribe the cut-off; returns the unsubscribe function."""
    return events.subscribe(lambda change: close_sessions_of(server, change) and None)
