"""Fake ASIC management APIs on 127.0.0.1 (physical miners cannot run here).

One profile per firmware, replies written for these tests from the published formats (never
copied fixture files): cgminer/bmminer RPC (JSON ``{"command": ...}`` -> JSON + NUL, then close),
Whatsminer btminer (``{"cmd": ...}`` -> flat reply, no terminator, idle close after 10 s,
``Code 14`` for an unknown command), AxeOS and Vnish HTTP. Each profile reproduces its
firmware's known quirks: bmminer's glued ``}{`` objects and bare ``inf``/``nan``, btminer's
trailing commas and raw newlines, newline-terminated replies on a connection left open.

Broken profiles: ``api_disabled`` (accept then close), ``garbage``, ``slow_drip`` (one byte per
0.2 s, forever), ``silent`` (accepts, never answers). An API a profile lacks points at a closed
port (connection refused), as on the real machine.

``python -m tests.fake_asic PROFILE`` serves one profile and prints its ports as JSON.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from firmware_probe.limits import ApiPorts

NOW = 1764560000


def _status(code: int, msg: str, desc: str = "") -> list[dict[str, Any]]:
    return [{"STATUS": "S", "When": NOW, "Code": code, "Msg": msg, "Description": desc}]


def _cg(section: str, items: list[dict[str, Any]], code: int = 11, msg: str = "") -> str:
    return json.dumps({"STATUS": _status(code, msg or section), section: items, "id": 1})


_INVALID = json.dumps(
    {"STATUS": [{"STATUS": "E", "When": NOW, "Code": 14, "Msg": "Invalid command"}], "id": 1}
)


def _bmminer(model: str, version: str, compile_time: str, rated_gh: float, av_gh: float,
             quirk_nonfinite: bool = False) -> dict[str, str]:  # fmt: skip
    head = {"BMMiner": version, "Miner": "uart_trans.1.3", "CompileTime": compile_time,
            "Type": model}  # fmt: skip
    chain = {"STATS": 0, "ID": "BC50", "Elapsed": 86400, "Calls": 0, "GHS 5s": f"{av_gh:.2f}",
             "GHS av": av_gh, "miner_count": 3, "frequency": "525", "fan_num": 4, "fan1": 5400,
             "total_rateideal": rated_gh, "rate_unit": "GH", "chain_rate1": f"{av_gh / 3:.2f}",
             "temp_chip1": "62-68-61-67"}  # fmt: skip
    stats = json.dumps({"STATUS": _status(70, "BMMiner stats"), "STATS": [head, chain], "id": 1})
    # bmminer glues the two objects together: "...}{..."
    stats = stats.replace("}, {", "}{", 1)
    if quirk_nonfinite:
        stats = stats.replace('"temp_chip1": "62-68-61-67"', '"temp_pcb1": inf, "eff": nan')
    return {
        "version": _cg("VERSION", [{**head, "API": "3.1"}], 22, "BMMiner versions"),
        "stats": stats,
        "summary": _cg(
            "SUMMARY",
            [
                {
                    "Elapsed": 86400,
                    "GHS 5s": f"{av_gh:.2f}",
                    "GHS av": av_gh,
                    "Accepted": 52311,
                    "Rejected": 21,
                    "Hardware Errors": 3,
                }
            ],
        ),
        "devs": _INVALID,
        "devdetails": _INVALID,
        "config": _cg(
            "CONFIG",
            [
                {
                    "ASC Count": 3,
                    "PGA Count": 0,
                    "Pool Count": 3,
                    "Strategy": "Failover",
                    "OS": "Linux",
                }
            ],
        ),
    }


S19 = _bmminer("Antminer S19 Pro", "1.0.0", "Fri Sep 15 14:32:41 CST 2023", 110000.0, 109876.54)
S21 = _bmminer("Antminer S21", "2.0.0", "Wed Jan 10 10:02:11 CST 2024", 200000.0, 201234.5, True)

BRAIINS = {
    "version": _cg("VERSION", [{"BOSminer": "bosminer-plus-tuner 0.2.0-6cf9ec8a", "API": "3.7"}]),
    "devdetails": _cg(
        "DEVDETAILS",
        [
            {
                "DEVDETAILS": i,
                "Name": "Hashboard",
                "ID": i,
                "Driver": "",
                "Kernel": "",
                "Model": "Antminer S19j Pro",
                "Device Path": "",
                "Chips": 126,
                "Frequency": 500,
            }
            for i in range(3)
        ],
    ),
    "stats": _cg("STATS", [{"STATS": 0, "ID": "pool0", "Elapsed": 3600}]),
    "summary": _cg(
        "SUMMARY", [{"Elapsed": 3600, "MHS av": 103456789.12, "MHS 5s": 104e6, "Accepted": 1204}]
    ),
    "devs": _cg("DEVS", [{"ASC": i, "Name": "", "ID": i, "MHS av": 34.4e6} for i in range(3)]),
    "config": _cg("CONFIG", [{"ASC Count": 3, "PGA Count": 0, "Pool Count": 1}]),
}

LUXOS = {
    "version": _cg(
        "VERSION",
        [
            {
                "API": "3.7",
                "LUXminer": "2024.6.19.155034-e6cfbd1",
                "Miner": "2024.6.19.155034-e6cfbd1",
                "Type": "Antminer S19 XP",
            }
        ],
    ),
    "devdetails": _cg("DEVDETAILS", [{"DEVDETAILS": 0, "Name": "", "ID": 0, "Model": "S19XP"}]),
    "stats": _cg(
        "STATS",
        [
            {"STATS": 0, "ID": "LUX0", "Elapsed": 7200, "GHS av": 141000.0, "temp_max": nan_text}
            for nan_text in ["NAN"]
        ],
    ).replace('"NAN"', "nan"),
    "summary": _cg("SUMMARY", [{"Elapsed": 7200, "GHS av": 140567.89, "Power": 3010}]),
    "devs": _cg("DEVS", [{"ASC": 0, "Name": "BTM_SOC0", "ID": 0, "SN": "BHB42601ABCD1234"}]),
    "config": _cg(
        "CONFIG",
        [
            {
                "ASC Count": 3,
                "PGA Count": 0,
                "Pool Count": 2,
                "MACAddr": "02:4B:3C:11:22:33",
                "Model": "S19XP",
                "SerialNumber": "HTM3X1234567890A",
                "Hostname": "lux-rig-7",
            }
        ],
    ),
}

VNISH_RPC = {
    **_bmminer(
        "Antminer S19j Pro (Vnish 1.2.6)",
        "1.2.6 (vnish 1.2.6)",
        "Mon May 20 10:11:12 UTC 2024",
        104000.0,
        105432.1,
    ),
}
VNISH_INFO = json.dumps({
    "miner": "Antminer S19j Pro", "model": "s19jpro", "fw_name": "Vnish", "fw_version": "1.2.6",
    "build_time": "2024-05-20 10:11:12", "platform": "xil", "install_type": "nand",
    "serial": "JYZZD4ABCDEF1234", "hr_measure": "GH/s",
    "system": {"os": "GNU/Linux", "uptime": "3 days",
               "network_status": {"mac": "02:11:22:33:44:55", "dhcp": True,
                                  "ip": "127.0.0.1", "hostname": "vnish"}},
})  # fmt: skip

AVALON = {
    "version": _cg(
        "VERSION",
        [
            {
                "CGMiner": "4.11.1",
                "API": "3.7",
                "STM8": "20.08.01",
                "PROD": "AvalonMiner 1246",
                "MODEL": "1246",
                "HWTYPE": "MM3v2_X3",
                "SWTYPE": "MM314",
                "VERSION": "21042001_4ec6bb0_61407fa",
                "LOADER": "d0d779de.00",
                "DNA": "020100008c2e7b52",
                "MAC": "b4a2eb3466d2",
                "UPAPI": "2",
            }
        ],
    ),
    "devdetails": _cg(
        "DEVDETAILS",
        [
            {
                "DEVDETAILS": 0,
                "Name": "AVA10",
                "ID": 0,
                "Driver": "avalon",
                "Kernel": "",
                "Model": "",
            }
        ],
    ),
    "stats": _cg(
        "STATS",
        [
            {
                "STATS": 0,
                "ID": "AVA100",
                "Elapsed": 5400,
                "MM ID0": "Ver[1246-83-21042001_4ec6bb0_61407fa] Elapsed[5400]",
            }
        ],
    ),
    "summary": _cg("SUMMARY", [{"Elapsed": 5400, "MHS av": 90123456.78, "MHS 5s": 9.1e7}]),
    "devs": _cg("DEVS", [{"ASC": 0, "Name": "AVA10", "ID": 0, "MHS av": 90123456.78}]),
    "config": _cg("CONFIG", [{"ASC Count": 1, "PGA Count": 0, "Pool Count": 3}]),
}

UNKNOWN_RPC = {
    "version": _cg("VERSION", [{"API": "3.1", "Miner": "custom"}]),
    "summary": _cg("SUMMARY", [{"Elapsed": 60}]),
}

# Whatsminer: flat replies (STATUS is a string), "Code 14" for what it does not know.
WHATSMINER = {
    "get_version": json.dumps(
        {
            "STATUS": "S",
            "When": NOW,
            "Code": 131,
            "Msg": {
                "api_ver": "2.0.5",
                "fw_ver": "20230911.16.Rel",
                "platform": "H616",
                "chip": "K67",
            },
            "Description": "",
        }
    ),
    # raw newline inside, trailing commas: btminer's quirks
    "get_miner_info": '{"STATUS":"S","When":1764560000,"Code":131,"Msg":{"ip":"127.0.0.1",'
    '"proto":"dhcp","netmask":"255.255.255.0","hostname":"WhatsMiner\n",'
    '"mac":"C4:07:2F:00:11:22","ledstat":"auto","minersn":"HKY3ES12345678901",'
    '"boardsn0":"MNBS0A1234","boardsn1":"MNBS0A1235","boardsn2":"MNBS0A1236",'
    '"powersn":"P222B0012345",},"Description":"",}',
    "summary": json.dumps(
        {
            "STATUS": _status(11, "Summary"),
            "SUMMARY": [
                {
                    "Elapsed": 5000,
                    "MHS av": 112003456.0,
                    "MHS 5s": 112e6,
                    "Power": 3312,
                    "Factory GHS": 112000,
                    "Power Rate": 29.5,
                }
            ],
            "id": 1,
        }
    ),
    "devdetails": json.dumps(
        {
            "STATUS": _status(69, "Device Details"),
            "DEVDETAILS": [
                {
                    "DEVDETAILS": i,
                    "Name": "SM",
                    "ID": i,
                    "Driver": "bitmicro",
                    "Kernel": "",
                    "Model": "M30S+VE40",
                }
                for i in range(3)
            ],
            "id": 1,
        }
    ),
}

BITAXE_INFO = json.dumps({
    "power": 14.2, "voltage": 5112.5, "current": 2781.25, "temp": 58.5, "hashRate": 1121.7,
    "expectedHashrate": 1150, "bestDiff": "4.29G", "stratumDiff": 1000, "freeHeap": 8456123,
    "coreVoltage": 1150, "frequency": 525, "ssid": "farm", "macAddr": "24:58:7C:AA:BB:CC",
    "hostname": "bitaxe", "sharesAccepted": 1234, "sharesRejected": 2, "uptimeSeconds": 7200,
    "asicCount": 1, "smallCoreCount": 2040, "ASICModel": "BM1370", "stratumURL": "127.0.0.1",
    "stratumPort": 3333, "version": "v2.4.2", "axeOSVersion": "v2.4.2", "idfVersion": "v5.3.1",
    "boardVersion": "601", "runningPartition": "ota_0", "fanspeed": 60, "fanrpm": 4200,
})  # fmt: skip
BITAXE_ASIC = json.dumps(
    {
        "ASICModel": "BM1370",
        "deviceModel": "Gamma",
        "swarmColor": "purple",
        "asicCount": 1,
        "defaultFrequency": 525,
        "frequencyOptions": [400, 490, 525, 575],
        "defaultVoltage": 1150,
    }
)


@dataclass
class Profile:
    rpc: str = ""  # "", "cgminer", "btminer", "api_disabled", "garbage", "slow_drip", "silent"
    rpc_replies: dict[str, str] = field(default_factory=dict)
    rpc_terminator: bytes = b"\x00"  # cgminer NUL; b"\n" = newline and the connection stays open
    http: dict[str, tuple[str, bool]] = field(default_factory=dict)  # path -> (body, chunked)
    http_keep_alive: bool = False  # the connection stays open after a response


PROFILES: dict[str, Profile] = {
    "antminer_s19": Profile("cgminer", S19),
    "antminer_s21": Profile("cgminer", S21, b"\n"),
    "braiins_os": Profile("cgminer", BRAIINS),
    "luxos": Profile("cgminer", LUXOS, b"\n"),
    "vnish": Profile("cgminer", VNISH_RPC, http={"/api/v1/info": (VNISH_INFO, False)}),
    "whatsminer": Profile("btminer", WHATSMINER),
    "avalon": Profile("cgminer", AVALON),
    "bitaxe": Profile(
        http={"/api/system/info": (BITAXE_INFO, True), "/api/system/asic": (BITAXE_ASIC, False)},
        http_keep_alive=True,
    ),
    "unknown_cgminer": Profile("cgminer", UNKNOWN_RPC),
    "api_disabled": Profile("api_disabled"),
    "garbage": Profile("garbage"),
    "slow_drip": Profile("slow_drip"),
    "silent": Profile("silent"),
}


def closed_port() -> int:
    """A port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeAsic:
    """``async with FakeAsic("antminer_s19") as asic: asic.ports`` (an ``ApiPorts``)."""

    def __init__(self, profile: str, idle_close_s: float = 10.0) -> None:
        self.name = profile
        self.profile = PROFILES[profile]
        self.idle_close_s = idle_close_s
        self.requests: list[str] = []  # every command / path asked, in order
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.ports = ApiPorts()

    async def __aenter__(self) -> FakeAsic:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> ApiPorts:
        p = self.profile
        rpc_port = await self._listen(self._rpc) if p.rpc else closed_port()
        http_port = await self._listen(self._http) if p.http else closed_port()
        self.ports = ApiPorts(cgminer=rpc_port, btminer=rpc_port, axeos=http_port,
                              vnish=http_port)  # fmt: skip
        return self.ports

    async def stop(self) -> None:
        for srv in self._servers:
            srv.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for srv in self._servers:
            await srv.wait_closed()

    async def _listen(self, handler: Callable[..., Any]) -> int:
        async def track(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await handler(r, w)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
                pass  # the probe hung up, or the fake is stopping
            finally:
                self._tasks.discard(task)
                w.close()

        srv = await asyncio.start_server(track, "127.0.0.1", 0)
        self._servers.append(srv)
        return int(srv.sockets[0].getsockname()[1])

    async def _rpc(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        p = self.profile
        if p.rpc == "api_disabled":
            return  # accept, then close
        if p.rpc == "slow_drip":
            await r.read(4096)
            while True:
                w.write(b"{")
                await w.drain()
                await asyncio.sleep(0.2)
        data = await r.read(4096)
        if p.rpc == "silent":
            await asyncio.Event().wait()
        if p.rpc == "garbage":
            w.write(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 not an API \xff\xfe\x00")
            await w.drain()
            return
        try:
            req = json.loads(data)
        except ValueError:
            req = {}
        if p.rpc == "btminer":
            await self._btminer(req, w)
            return
        command = str(req.get("command", ""))
        self.requests.append(command)
        reply = p.rpc_replies.get(command, _INVALID)
        w.write(reply.encode() + p.rpc_terminator)
        await w.drain()
        if p.rpc_terminator == b"\n":
            await asyncio.sleep(self.idle_close_s)  # left open, as LuxOS / newer bmminer do

    async def _btminer(self, req: dict[str, Any], w: asyncio.StreamWriter) -> None:
        command = str(req.get("cmd") or req.get("command") or "")
        self.requests.append(command)
        reply = self.profile.rpc_replies.get(command) if "cmd" in req else None
        if reply is None:
            reply = json.dumps({"STATUS": "E", "When": NOW, "Code": 14, "Msg": "invalid cmd",
                                "Description": ""})  # fmt: skip
        w.write(reply.encode())  # no terminator: btminer leaves the connection open
        await w.drain()
        await asyncio.sleep(self.idle_close_s)  # then closes an idle connection

    async def _http(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await r.readuntil(b"\r\n\r\n")
        parts = head.split(b"\r\n", 1)[0].split()
        path = parts[1].decode() if len(parts) > 1 else "/"
        self.requests.append(path)
        found = self.profile.http.get(path)
        if found is None:
            body = b'{"error":"not found"}'
            w.write(
                b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
        else:
            text, chunked = found
            body = text.encode()
            if chunked:  # ESP-IDF's httpd sends chunks
                mid = len(body) // 2
                payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:mid], body[mid:]))
                w.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n" + payload + b"0\r\n\r\n"
                )
            else:
                w.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
        await w.drain()
        if self.profile.http_keep_alive:
            await asyncio.sleep(self.idle_close_s)  # ignores Connection: close, like ESP-IDF


async def _serve(profile: str) -> None:
    async with FakeAsic(profile) as asic:
        p = asic.ports
        print(json.dumps({"cgminer": p.cgminer, "btminer": p.btminer, "axeos": p.axeos,
                          "vnish": p.vnish, "started": time.time()}), flush=True)  # fmt: skip
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1]))
