"""The firmware probe against fake ASICs (real TCP on 127.0.0.1, one fake per firmware profile):
each profile identified or classified, quirks repaired and named, nothing hangs."""

from __future__ import annotations

import asyncio
import socket

import pytest

from firmware_probe import ApiPorts, Outcome, ProbeLimits, parse_user_agent, probe_host
from firmware_probe.jsonrepair import ReplyError, parse_reply
from firmware_probe.normalise import mac, normalise_model, rate, serial
from firmware_probe.readers import BTMINER_COMMANDS, CGMINER_COMMANDS
from poolserver.storage.probe_models import OUTCOMES
from tests.fake_asic import FakeAsic, closed_port

# Short timeouts: the broken profiles must end by the clock, the tests must not wait 5 s each.
LIMITS = ProbeLimits(connect_timeout_s=0.5, command_timeout_s=0.6, probe_timeout_s=4.0)

T = 10**12
G = 10**9

EXPECTED = {
    "antminer_s19": dict(
        outcome=Outcome.IDENTIFIED, vendor="Bitmain", model="Antminer S19 Pro",
        firmware_family="antminer_stock", serial=None, rated_hashrate=110 * T,
        hashrate=109_876_540 * 10**6, repairs={"cgminer:stats:missing_comma"},
    ),
    "antminer_s21": dict(
        outcome=Outcome.IDENTIFIED, vendor="Bitmain", model="Antminer S21",
        firmware_family="antminer_stock", serial=None, rated_hashrate=200 * T,
        repairs={"cgminer:stats:missing_comma", "cgminer:stats:bare_nonfinite"},
    ),
    "braiins_os": dict(
        outcome=Outcome.IDENTIFIED, vendor="Bitmain", model="Antminer S19j Pro",
        firmware_family="braiins_os", firmware_version="bosminer-plus-tuner 0.2.0-6cf9ec8a",
        serial=None, hashrate=103_456_789_120_000,
    ),
    "luxos": dict(
        outcome=Outcome.IDENTIFIED, vendor="Bitmain", model="Antminer S19 XP",
        firmware_family="luxos", serial="HTM3X1234567890A", mac="02:4b:3c:11:22:33",
        board_serials=("BHB42601ABCD1234",), power_w=3010,
        repairs={"cgminer:stats:bare_nonfinite"},
    ),
    "vnish": dict(
        outcome=Outcome.IDENTIFIED, vendor="Bitmain", model="Antminer S19j Pro",
        firmware_family="vnish", firmware_version="1.2.6", serial="JYZZD4ABCDEF1234",
        mac="02:11:22:33:44:55", apis=("vnish", "cgminer"),
    ),
    "whatsminer": dict(
        outcome=Outcome.IDENTIFIED, vendor="MicroBT", model="Whatsminer M30S+",
        firmware_family="whatsminer", firmware_version="20230911.16.Rel",
        serial="HKY3ES12345678901", psu_serial="P222B0012345", power_w=3312,
        board_serials=("MNBS0A1234", "MNBS0A1235", "MNBS0A1236"), rated_hashrate=112 * T,
        repairs={"btminer:get_miner_info:trailing_comma", "btminer:get_miner_info:control_chars"},
    ),
    "avalon": dict(
        outcome=Outcome.IDENTIFIED, vendor="Canaan", model="AvalonMiner 1246",
        firmware_family="avalon", firmware_version="21042001_4ec6bb0_61407fa",
        mac="b4:a2:eb:34:66:d2", serial=None,
    ),
    "bitaxe": dict(
        outcome=Outcome.IDENTIFIED, vendor="Bitaxe", model="Bitaxe Gamma (BM1370)",
        firmware_family="axeos", firmware_version="v2.4.2", serial=None, power_w=14,
        hashrate=1_121_700 * 10**6, rated_hashrate=1150 * G, mac="24:58:7c:aa:bb:cc",
    ),
    "unknown_cgminer": dict(outcome=Outcome.UNKNOWN_FIRMWARE, model=None),
    "api_disabled": dict(outcome=Outcome.API_DISABLED),
    "garbage": dict(outcome=Outcome.ERROR),
    "slow_drip": dict(outcome=Outcome.TIMEOUT),
    "silent": dict(outcome=Outcome.TIMEOUT),
}  # fmt: skip


@pytest.mark.parametrize("profile", sorted(EXPECTED))
async def test_each_profile_is_identified_or_classified(profile):
    async with FakeAsic(profile) as asic:
        async with asyncio.timeout(LIMITS.probe_timeout_s + 2):  # never hangs
            result = await probe_host("127.0.0.1", asic.ports, LIMITS)
    want = dict(EXPECTED[profile])
    repairs = want.pop("repairs", set())
    for name, value in want.items():
        assert getattr(result, name) == value, (name, result.to_dict())
    assert repairs <= set(result.repairs)
    if result.outcome is Outcome.IDENTIFIED:
        # every identity value says where it came from, and the raw replies are kept
        for name in ("vendor", "model", "firmware_family", "firmware_version"):
            assert result.sources[name].split(":")[0] in result.apis
        assert result.evidence and all(len(v) <= LIMITS.max_evidence_bytes + 64
                                       for v in result.evidence.values())  # fmt: skip
        if result.serial is None:
            assert "serial not exposed" in result.detail
    else:
        assert result.detail  # says why


async def test_only_read_only_commands_reach_the_machine():
    asked: list[str] = []
    for profile in ("antminer_s19", "whatsminer", "bitaxe", "vnish"):
        async with FakeAsic(profile) as asic:
            await probe_host("127.0.0.1", asic.ports, LIMITS)
            asked += asic.requests
    allowed = {*CGMINER_COMMANDS, *BTMINER_COMMANDS, "/api/system/info", "/api/system/asic",
               "/api/v1/info"}  # fmt: skip
    assert set(asked) <= allowed
    assert "get_version" in asked and "version" in asked and "/api/v1/info" in asked


async def test_whatsminer_idle_connection_is_not_waited_for():
    """btminer leaves the connection open for 10 s after a reply; a complete reply ends the read,
    so the probe is done long before (the per-command timeout would fail it otherwise)."""
    async with FakeAsic("whatsminer", idle_close_s=30) as asic:
        limits = ProbeLimits(connect_timeout_s=0.5, command_timeout_s=2.0, probe_timeout_s=3.0)
        result = await probe_host("127.0.0.1", asic.ports, limits)
    assert result.outcome is Outcome.IDENTIFIED
    assert "stopped" not in result.detail


def test_http_response_end_without_waiting_for_close():
    from firmware_probe.net import http_end, parse_http_response

    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    assert http_end(bytearray(head + b"{}"), b"") is None
    assert http_end(bytearray(head + b'{"a":'), b"") == len(head) + 5
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    assert http_end(bytearray(chunked[:-4]), b"") is None
    assert http_end(bytearray(chunked + b"junk"), b"") == len(chunked)
    assert parse_http_response(chunked) == (200, b"{}")
    assert http_end(bytearray(b"HTTP/1.0 200 OK\r\n\r\n{}"), b"") is None  # to EOF


async def test_refused_and_unreachable():
    ports = ApiPorts(closed_port(), closed_port(), closed_port(), closed_port())
    assert (await probe_host("127.0.0.1", ports, LIMITS)).outcome is Outcome.REFUSED
    # A host that never completes the handshake: a listener whose accept queue is full drops
    # further SYNs (Linux), so the connect timeout decides, as for a machine that is down.
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    short = ProbeLimits(connect_timeout_s=0.3, command_timeout_s=0.3, probe_timeout_s=2)
    try:
        far = await probe_host("127.0.0.1", ApiPorts(port, port, 0, 0), short)
    finally:
        for s in (*fillers, lst):
            s.close()
    assert far.outcome is Outcome.UNREACHABLE, far.detail
    assert "no connection within 0.3 s" in far.detail


async def test_response_cap_is_an_error_not_a_buffer():
    async def flood(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read(100)
        try:
            while True:
                w.write(b'{"STATUS":[' + b" " * 65536)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass

    srv = await asyncio.start_server(flood, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    limits = ProbeLimits(connect_timeout_s=0.5, command_timeout_s=5, probe_timeout_s=6,
                         max_response_bytes=200_000)  # fmt: skip
    try:
        result = await probe_host("127.0.0.1", ApiPorts(port, port, 0, 0), limits)
    finally:
        srv.close()
    assert result.outcome is Outcome.ERROR
    assert "200000-byte cap" in result.detail


async def test_whole_probe_timeout_keeps_what_answered():
    async with FakeAsic("antminer_s19") as good, FakeAsic("silent") as silent:
        ports = ApiPorts(good.ports.cgminer, 0, silent.ports.cgminer, 0)
        limits = ProbeLimits(connect_timeout_s=0.5, command_timeout_s=5, probe_timeout_s=1.0)
        result = await probe_host("127.0.0.1", ports, limits)
    assert result.outcome is Outcome.IDENTIFIED  # the cgminer answers survive the cut
    assert "whole probe stopped" in result.detail


async def test_user_agent_hint_orders_apis_and_is_a_fallback_source():
    hints = parse_user_agent("bitaxe/BM1370/v2.14.2", 0x1FFFE000, 1000.0)
    assert hints.firmware_family == "axeos" and hints.asic_chip == "BM1370"
    assert hints.firmware_version == "v2.14.2" and hints.order[0] == "axeos"
    assert parse_user_agent("whatsminer/v1.0").order[0] == "btminer"
    assert parse_user_agent("cpuminer/2.5.1").firmware_family == "cpuminer"
    assert parse_user_agent("bmminer/2.0.0").vendor == "Bitmain"
    assert parse_user_agent("something/1.0").firmware_family is None
    async with FakeAsic("silent") as asic:
        result = await probe_host("127.0.0.1", asic.ports, LIMITS, hints)
    assert result.outcome is Outcome.TIMEOUT
    # no API answered: the hint is recorded, marked as coming from Stratum
    assert result.firmware_family == "axeos"
    assert result.sources["firmware_family"] == "stratum:user_agent"
    assert result.hints["version_mask"] == "1fffe000"


def test_json_repairs_name_what_fired():
    obj, fixed = parse_reply(b'{"STATS":[{"a":1}{"b":inf,"c":-inf,"d":nan}],"id":1}\x00\x00')
    assert obj["STATS"] == [{"a": 1}, {"b": None, "c": None, "d": None}]
    assert fixed == ("trailing_nul", "missing_comma", "bare_nonfinite")
    obj, fixed = parse_reply(b'{"STATUS":"S","Msg":{"x":"a\nb",},}')
    assert obj["Msg"] == {"x": "a b"} and fixed == ("trailing_comma", "control_chars")
    assert parse_reply(b'{"ok": "nan inside a string"}') == ({"ok": "nan inside a string"}, ())
    for bad in (b"", b"\x00", b"[1,2]", b"\x16\x03\x01garbage", b'{"a":'):
        with pytest.raises(ReplyError):
            parse_reply(bad)


def test_normalisation_is_strict_about_serials_and_units():
    assert serial("  HTM3X1234567890A ") == "HTM3X1234567890A"
    for junk in ("", "0", "unknown", "N/A", "ffffffff", "a b c", "x" * 65, None, 3.5):
        assert serial(junk) is None
    assert mac("b4a2eb3466d2") == "b4:a2:eb:34:66:d2" and mac("00:00:00:00:00:00") is None
    assert rate("110000.00", "GH") == 110 * T and rate(104e6, "MH") == 104 * T
    assert rate("inf", "GH") is None and rate(-1, "GH") is None and rate(True, "GH") is None
    assert normalise_model("Bitmain", "Antminer S19Pro") == "Antminer S19 Pro"
    assert normalise_model("Bitmain", "S19XP") == "Antminer S19 XP"
    assert normalise_model("MicroBT", "M30S++VH10") == "Whatsminer M30S++"


def test_one_outcome_enum_for_storage_and_metrics():
    assert tuple(o.value for o in Outcome) == OUTCOMES
