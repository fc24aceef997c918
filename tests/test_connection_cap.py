"""The global connection cap ([stratum].max_connections, issue 14 follow-up): a flood spread over
many addresses, each under its per-IP cap, is refused beyond the cap while the sessions already
open keep mining. Real sockets from several 127.0.0.x addresses; the automatic cap and the
config validation through the real config path."""

from __future__ import annotations

import logging
import resource
from typing import Any

import pytest

from poolserver.app import server_settings
from poolserver.config import ConfigError, config_from_dict
from poolserver.fdlimit import HEADROOM, automatic_cap, connection_cap
from stratum.settings import ServerSettings
from tests.conftest import wait_until
from tests.stratum_client import StratumClient
from tests.stratum_support import fixture_job, hard, start_server


class RecordedEvents:
    """The security log as the server sees it (``stratum.interfaces.SecurityEvents``)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, fields))


async def _miner(port: int, source: str, worker: str) -> StratumClient:
    c = await StratumClient.connect("127.0.0.1", port, source=source)
    await c.cgminer(worker)
    await c.wait_job()
    return c


async def _share_accepted(c: StratumClient) -> bool:
    job = c.last_job
    assert job is not None
    reply = await c.submit(job, c.grind(job, version_bits=0))
    return reply.get("result") is True


async def test_the_cap_refuses_the_sixth_and_keeps_the_five_mining(caplog):
    caplog.set_level(logging.WARNING, logger="stratum.server")
    events = RecordedEvents()
    server, port, sink, _ = await start_server(
        job=hard(fixture_job()), max_connections=5, max_connections_per_ip=2, security=events
    )
    try:
        assert server.stats.connections_max == 5
        miners = [await _miner(port, f"127.0.0.{2 + i}", f"acc.w{i}") for i in range(5)]
        # three more, each from its own address (under the per-IP cap of 2): closed at once
        for i in range(3):
            extra = await StratumClient.connect("127.0.0.1", port, source=f"127.0.0.{10 + i}")
            await extra.wait_closed()
            assert extra.closed
        assert server.stats.connections_refused["global_cap"] == 3
        assert server.stats.connections_refused["per_ip_cap"] == 0
        assert server.stats.connections_current == 5
        # the five were never dropped: subscribe/authorize held, their shares are accepted
        for m in miners:
            assert not m.closed
            assert await _share_accepted(m)
        assert len(sink.shares) == 5
        # one warning for the three refusals (rate-limited), naming the cap
        warnings = [r for r in caplog.records if "global cap" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        assert "max_connections is 5" in warnings[0].getMessage()
        # closing one lets a new connection in, from yet another address
        await miners[0].close()
        await wait_until(lambda: server.stats.connections_current == 4)
        newcomer = await _miner(port, "127.0.0.20", "acc.new")
        assert await _share_accepted(newcomer)
        assert server.stats.connections_refused["global_cap"] == 3
        # and the cap is full again
        late = await StratumClient.connect("127.0.0.1", port, source="127.0.0.21")
        await late.wait_closed()
        assert server.stats.connections_refused["global_cap"] == 4
        for m in (*miners[1:], newcomer):
            await m.close()
    finally:
        await server.shutdown()
    # the security log got one summary for the whole flood, not one event per connection
    floods = [f for kind, f in events.events if kind == "connection.flood"]
    assert floods == [
        {
            "peer": "*",
            "reason": "global_cap",
            "count": 4,
            "first_at": floods[0]["first_at"],
            "last_at": floods[0]["last_at"],
        }
    ]


async def test_no_cap_when_zero():
    server, port, _, _ = await start_server(max_connections=0, max_connections_per_ip=0)
    try:
        clients = [await StratumClient.connect("127.0.0.1", port, source=f"127.0.0.{2 + i % 3}")
                   for i in range(12)]  # fmt: skip
        await wait_until(lambda: server.stats.connections_current == 12)
        assert server.stats.connections_refused["global_cap"] == 0
        for c in clients:
            await c.close()
    finally:
        await server.shutdown()


def test_the_automatic_cap_is_the_soft_limit_minus_the_headroom(caplog):
    caplog.set_level(logging.INFO, logger="poolserver.fdlimit")
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    settings = server_settings(config_from_dict({"stratum": {"max_connections_per_ip": 100}}))
    if soft == resource.RLIM_INFINITY:
        assert settings.max_connections == 0
    else:
        assert soft > 2 * HEADROOM  # the test machine's limit; the formula's main case
        assert settings.max_connections == soft - HEADROOM
        (line,) = [r.getMessage() for r in caplog.records if "connection cap" in r.getMessage()]
        assert line == (f"stratum connection cap: {soft - HEADROOM} in total (automatic: "
                        f"open-files limit {soft} - {HEADROOM} kept for storage, nodes, logs), "
                        "100 per IP")  # fmt: skip
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    # a tiny limit keeps half of it for the pool's own files; unlimited descriptors: no cap
    assert automatic_cap(300) == 150 and automatic_cap(4096) == 4096 - HEADROOM
    assert automatic_cap(None) == 0


def test_a_configured_cap_is_used_and_warned_when_it_eats_the_headroom(caplog):
    caplog.set_level(logging.INFO, logger="poolserver.fdlimit")
    assert connection_cap(500, 0, 1024) == 500
    assert "stratum connection cap: 500 in total (configured), unlimited per IP" in caplog.text
    assert "exceeds" not in caplog.text
    caplog.clear()
    assert connection_cap(900, 64, 1024) == 900
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        "[stratum].max_connections 900 exceeds the open-files limit 1024 - 256"
        in warning.getMessage()
    )
    assert (
        server_settings(config_from_dict({"stratum": {"max_connections": 7}})).max_connections == 7
    )


@pytest.mark.parametrize(("value", "message"), [
    (-1, "stratum.max_connections: expected an integer >= 0 (0 = automatic: the open-files "
         "limit minus 256), got -1"),
    ("100", "stratum.max_connections: expected int, got '100'"),
    (True, "stratum.max_connections: expected int, got True"),
    (2.5, "stratum.max_connections: expected int, got 2.5"),
])  # fmt: skip
def test_config_validation_names_the_field(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        server_settings(config_from_dict({"stratum": {"max_connections": value}}))
    assert str(err.value) == message


def test_the_server_settings_refuse_a_negative_cap():
    with pytest.raises(ValueError, match=r"max_connections must be >= 0 \(0 = no cap\), got -3"):
        ServerSettings(max_connections=-3)
