"""One reader per API: fixed read-only commands, one connection each, replies parsed and kept.

cgminer/bmminer RPC (TCP, JSON ``{"command": ...}``), Whatsminer btminer (TCP, JSON
``{"cmd": ...}``, flat replies, ``Code 14`` for a command it does not know), AxeOS and Vnish
(HTTP GET). The command names are constants here; nothing from outside reaches the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from firmware_probe.jsonrepair import ReplyError, parse_reply
from firmware_probe.limits import ProbeLimits
from firmware_probe.net import NetError, http_get, tcp_request
from firmware_probe.outcome import Outcome

CGMINER_COMMANDS = ("version", "devdetails", "stats", "summary", "devs", "config")
BTMINER_COMMANDS = ("get_version", "get_miner_info", "summary", "devdetails")
# get_miner_info names what it should return; these are read-only facts of the machine.
BTMINER_INFO = (
    "ip,proto,netmask,gateway,dns,hostname,mac,ledstat,minersn,boardsn0,boardsn1,boardsn2,powersn"
)
AXEOS_PATHS = ("/api/system/info", "/api/system/asic")
VNISH_PATHS = ("/api/v1/info",)


@dataclass(slots=True)
class ApiReplies:
    api: str
    port: int
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)
    repairs: list[str] = field(default_factory=list)
    failure: NetError | None = None  # why the reader stopped early (None: all asked)
    absent: bool = False  # something answered, but not this API (HTTP 404, other protocol)
    btminer: bool = False  # the cgminer port answered in btminer's flat format

    @property
    def answered(self) -> bool:
        return bool(self.replies) and not self.absent


def _is_flat(reply: dict[str, Any]) -> bool:
    """btminer answers with ``"STATUS": "S"|"E"`` (a string); cgminer with a list."""
    return isinstance(reply.get("STATUS"), str)


def _parse(out: ApiReplies, name: str, data: bytes) -> dict[str, Any] | None:
    out.raw[name] = data
    try:
        obj, repairs = parse_reply(data)
    except ReplyError as exc:
        out.failure = NetError(Outcome.ERROR, f"{out.api} {name}: {exc}")
        return None
    out.repairs.extend(f"{out.api}:{name}:{r}" for r in repairs)
    return obj


async def read_cgminer(
    host: str, port: int, limits: ProbeLimits, out: ApiReplies | None = None
) -> ApiReplies:
    """Fills ``out`` as replies arrive, so a probe cut short keeps what it got."""
    out = out or ApiReplies("cgminer", port)
    for command in CGMINER_COMMANDS:
        try:
            data = await tcp_request(host, port, json.dumps({"command": command}).encode(), limits)
        except NetError as exc:
            out.failure = exc
            return out
        obj = _parse(out, command, data)
        if obj is None:
            return out
        if _is_flat(obj):
            out.btminer = True  # a Whatsminer: its own reader asks the rest
            out.absent = True
            return out
        out.replies[command] = obj
    return out


async def read_btminer(
    host: str, port: int, limits: ProbeLimits, out: ApiReplies | None = None
) -> ApiReplies:
    out = out or ApiReplies("btminer", port)
    for command in BTMINER_COMMANDS:
        request: dict[str, str] = {"cmd": command}
        if command == "get_miner_info":
            request["info"] = BTMINER_INFO
        try:
            data = await tcp_request(host, port, json.dumps(request).encode(), limits)
        except NetError as exc:
            out.failure = exc
            return out
        obj = _parse(out, command, data)
        if obj is None:
            return out
        if obj.get("STATUS") == "E" and obj.get("Code") == 14:
            # "invalid cmd": an older btminer without this command; the others may still work
            out.raw[command] = data
            continue
        if command == "get_version" and not _is_flat(obj):
            out.absent = True  # a cgminer answering {"cmd": ...}: not a Whatsminer
            return out
        out.replies[command] = obj
    return out


async def _read_http(
    out: ApiReplies, host: str, paths: tuple[str, ...], limits: ProbeLimits
) -> ApiReplies:
    port = out.port
    for path in paths:
        try:
            status, body = await http_get(host, port, path, limits)
        except NetError as exc:
            out.failure = exc
            return out
        if status != 200:
            out.raw[path] = f"HTTP {status}".encode()
            if not out.replies:
                out.absent = True  # the first path is the API's signature
                return out
            continue
        obj = _parse(out, path, body)
        if obj is None:
            return out
        out.replies[path] = obj
    return out


async def read_axeos(
    host: str, port: int, limits: ProbeLimits, out: ApiReplies | None = None
) -> ApiReplies:
    out = await _read_http(out or ApiReplies("axeos", port), host, AXEOS_PATHS, limits)
    info = out.replies.get(AXEOS_PATHS[0], {})
    if out.replies and not any(k in info for k in ("ASICModel", "hashRate", "axeOSVersion")):
        out.absent = True  # some other JSON service on this port
    return out


async def read_vnish(
    host: str, port: int, limits: ProbeLimits, out: ApiReplies | None = None
) -> ApiReplies:
    out = await _read_http(out or ApiReplies("vnish", port), host, VNISH_PATHS, limits)
    info = out.replies.get(VNISH_PATHS[0], {})
    if out.replies and "fw_name" not in info and "fw_version" not in info:
        out.absent = True
    return out
