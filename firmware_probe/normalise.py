"""Pure normalisation: parsed API replies -> identity facts, each with its source.

A ``Fact`` is ``(field, value, source)``. Each ``from_*`` function reads one API's replies and
returns the facts it can state; ``merge`` keeps, per field, the first fact in priority order.
Serials are taken only from fields that hold one and only when they look like one (the register's
alphabet); a machine that exposes none has ``serial = None`` (unknown), never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

Fact = tuple[str, Any, str]
Reply = Mapping[str, Any]

_SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{3,63}")
_MAC = re.compile(r"([0-9a-f]{2})[:-]?" * 5 + r"([0-9a-f]{2})", re.IGNORECASE)
_UNITS = {"H": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_NO_SERIAL = {"", "0", "none", "null", "unknown", "n/a", "na", "-", "ffffffff", "000000000000"}


def serial(value: Any) -> str | None:
    text = str(value).strip() if isinstance(value, str | int) else ""
    if text.casefold() in _NO_SERIAL or not _SERIAL.fullmatch(text):
        return None
    return text


def mac(value: Any) -> str | None:
    m = _MAC.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if m is None:
        return None
    text = ":".join(g.lower() for g in m.groups())
    return None if text in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff") else text


def number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return d if d.is_finite() and d >= 0 else None


def rate(value: Any, unit: str) -> int | None:
    """A hashrate in ``unit`` (``GH``, ``MH``, ``TH``...) as integer H/s."""
    d = number(value)
    scale = _UNITS.get(unit[:1].upper()) if unit else None
    if d is None or scale is None:
        return None
    hs = int(d * scale)
    return hs if 0 < hs < 2**63 else None


def whole(value: Any) -> int | None:
    d = number(value)
    return int(d) if d is not None and d < 2**63 else None


def _text(value: Any, limit: int = 64) -> str | None:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    text = " ".join(str(value).split())[:limit]
    return text or None


def _first(reply: Reply | None, section: str) -> dict[str, Any]:
    items = reply.get(section) if isinstance(reply, Mapping) else None
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                return item
    return {}


def _all(reply: Reply | None, section: str) -> list[dict[str, Any]]:
    items = reply.get(section) if isinstance(reply, Mapping) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


# ---- models --------------------------------------------------------------------------------

_PREFIXES = ("bitmain ", "antminer ", "microbt ", "whatsminer ", "canaan ", "avalonminer ")


def normalise_model(vendor: str | None, raw: str) -> str:
    """``Antminer S19 Pro`` / ``S19Pro`` / ``M30S+VE40`` -> a register-comparable name:
    the product line, then the model (upper-case series, spaces before Pro/XP/Hydro...)."""
    text = " ".join(raw.replace("_", " ").split())
    low = text.lower()
    for p in _PREFIXES:
        if low.startswith(p):
            text, low = text[len(p) :], low[len(p) :]
    if vendor == "MicroBT":
        m = re.match(r"(M\d+S?(?:\+\+|\+)?)", text, re.IGNORECASE)
        return f"Whatsminer {m.group(1).upper() if m else text}"
    if vendor == "Canaan":
        return "AvalonMiner " + re.sub(r"(?i)^avalon\s*", "", text)
    if vendor == "Bitaxe":
        return text if text.lower().startswith("bitaxe") else f"Bitaxe {text}"
    if vendor == "Bitmain":
        text = re.sub(r"(?i)(?<=\d)(j?)(pro|xp|hydro|hyd\.?|plus|\+\+)", r"\1 \2", text)
        text = re.sub(r"(?i)\b(pro|xp|hydro)\b", _suffix_case, text)
        text = re.sub(r"(?i)\bhyd\.?$", "Hydro", text)
        return f"Antminer {text[:1].upper()}{text[1:]}"
    return text


def _suffix_case(m: re.Match[str]) -> str:
    word = m.group(1)
    return "XP" if word.lower() == "xp" else word.capitalize()


def vendor_of(raw_model: str) -> str | None:
    low = raw_model.lower()
    if "antminer" in low or re.match(r"(?i)[stlkdez]\d{1,2}[a-z]*\b", raw_model):
        return "Bitmain"
    if "whatsminer" in low or re.match(r"(?i)m\d{2}s?", raw_model):
        return "MicroBT"
    if "avalon" in low:
        return "Canaan"
    if "bitaxe" in low:
        return "Bitaxe"
    return None


# ---- cgminer / bmminer ---------------------------------------------------------------------


def _family_from_version(v: dict[str, Any]) -> tuple[str, str | None, str] | None:
    """(family, version, key) from a cgminer-style ``VERSION`` entry."""
    keys = {k.lower(): k for k in v}
    flat = " ".join(str(x) for x in v.values()).lower()
    for key, family in (
        ("luxminer", "luxos"),
        ("bosminer", "braiins_os"),
        ("boser", "braiins_os"),
    ):
        if key in keys:
            return family, _text(v[keys[key]]), keys[key]
    if "vnish" in flat:
        for k, val in v.items():
            if "vnish" in str(val).lower():
                m = re.search(r"(\d+(?:\.\d+)+)", str(val))
                return "vnish", m.group(1) if m else None, k
    if "prod" in keys and "avalon" in str(v[keys["prod"]]).lower():
        fw = v.get(keys.get("version", ""), None) or v.get(keys.get("cgminer", ""), None)
        return "avalon", _text(fw), keys.get("version", keys.get("cgminer", "PROD"))
    if "bmminer" in keys:
        return "antminer_stock", _text(v[keys["bmminer"]]), keys["bmminer"]
    if "cgminer" in keys:
        return "cgminer", _text(v[keys["cgminer"]]), keys["cgminer"]
    return None


def from_cgminer(replies: Mapping[str, Reply]) -> list[Fact]:
    facts: list[Fact] = []
    version = _first(replies.get("version"), "VERSION")
    stats = _all(replies.get("stats"), "STATS")
    summary = _first(replies.get("summary"), "SUMMARY")
    config = _first(replies.get("config"), "CONFIG")
    details = _all(replies.get("devdetails"), "DEVDETAILS")
    devs = _all(replies.get("devs"), "DEVS")
    fam = _family_from_version(version)
    if fam is not None:
        family, fw_version, key = fam
        facts.append(("firmware_family", family, f"cgminer:version.{key}"))
        if fw_version:
            # Antminer stock reports the miner program's version; the firmware build date is
            # the better identifier when present.
            compile_time = _text(version.get("CompileTime"))
            if family == "antminer_stock" and compile_time:
                facts.append(("firmware_version", compile_time, "cgminer:version.CompileTime"))
            facts.append(("firmware_version", fw_version, f"cgminer:version.{key}"))
    # model: VERSION.Type (bmminer, LuxOS), STATS[0].Type, Avalon PROD, CONFIG.Model,
    # DEVDETAILS.Model (Braiins OS)
    candidates = [
        (version.get("Type"), "cgminer:version.Type"),
        (version.get("PROD"), "cgminer:version.PROD"),
        *((s.get("Type"), "cgminer:stats.Type") for s in stats[:1]),
        (config.get("Model"), "cgminer:config.Model"),
        *((d.get("Model"), "cgminer:devdetails.Model") for d in details[:1]),
    ]
    for raw, source in candidates:
        text = _text(raw)
        if not text:
            continue
        text = re.sub(r"\s*\((?:vnish|braiins)[^)]*\)", "", text, flags=re.IGNORECASE)
        vendor = vendor_of(text)
        if vendor is None and fam is not None and fam[0] in ("braiins_os", "luxos", "vnish"):
            vendor = "Bitmain"  # these firmwares run on Antminer hardware only
        if vendor:
            facts.append(("vendor", vendor, source))
        facts.append(("model", normalise_model(vendor, text), source))
        break
    if fam is not None and fam[0] == "avalon":
        facts.append(("vendor", "Canaan", "cgminer:version.PROD"))
    # serials and MAC (LuxOS config; Avalon version)
    for key in ("SerialNumber", "Serial", "SN"):
        if (s := serial(config.get(key))) is not None:
            facts.append(("serial", s, f"cgminer:config.{key}"))
    for reply_name, entry in (("config", config), ("version", version)):
        for key in ("MACAddr", "MAC", "mac"):
            if (m := mac(entry.get(key))) is not None:
                facts.append(("mac", m, f"cgminer:{reply_name}.{key}"))
    boards = [
        s
        for d in (*details, *devs)
        for key in ("SerialNumber", "Serial", "SN", "Board SN")
        if (s := serial(d.get(key))) is not None
    ]
    if boards:
        facts.append(("board_serials", tuple(dict.fromkeys(boards)), "cgminer:devdetails.SN"))
    # hashrates: bmminer stats carry rate_unit and the rated total
    for s in stats:
        unit = str(s.get("rate_unit") or "GH")
        if (r := rate(s.get("total_rateideal"), unit)) is not None:
            facts.append(("rated_hashrate", r, "cgminer:stats.total_rateideal"))
        if (r := rate(s.get("GHS av"), "GH")) is not None:
            facts.append(("hashrate", r, "cgminer:stats.GHS av"))
        if (e := whole(s.get("Elapsed"))) is not None:
            facts.append(("uptime_s", e, "cgminer:stats.Elapsed"))
    for key, unit in (("GHS av", "GH"), ("MHS av", "MH"), ("THS av", "TH")):
        if (r := rate(summary.get(key), unit)) is not None:
            facts.append(("hashrate", r, f"cgminer:summary.{key}"))
    for key in ("Power", "Power Consumption"):
        if (p := whole(summary.get(key))) is not None and p > 0:
            facts.append(("power_w", p, f"cgminer:summary.{key}"))
    if (e := whole(summary.get("Elapsed"))) is not None:
        facts.append(("uptime_s", e, "cgminer:summary.Elapsed"))
    return _hashrate_first_summary(facts)


def _hashrate_first_summary(facts: list[Fact]) -> list[Fact]:
    """The summary's average is the whole machine's; prefer it over per-stats figures."""
    return sorted(
        facts, key=lambda f: f[0] == "hashrate" and not f[2].startswith("cgminer:summary")
    )


# ---- Whatsminer btminer --------------------------------------------------------------------


def _msg(reply: Reply | None) -> dict[str, Any]:
    msg = reply.get("Msg") if isinstance(reply, Mapping) else None
    return msg if isinstance(msg, dict) else {}


def from_btminer(replies: Mapping[str, Reply]) -> list[Fact]:
    facts: list[Fact] = [("vendor", "MicroBT", "btminer:protocol")]
    version = _msg(replies.get("get_version"))
    info = _msg(replies.get("get_miner_info"))
    summary = _first(replies.get("summary"), "SUMMARY")
    details = _all(replies.get("devdetails"), "DEVDETAILS")
    if version:
        facts.append(("firmware_family", "whatsminer", "btminer:get_version"))
        if fw := _text(version.get("fw_ver")):
            facts.append(("firmware_version", fw, "btminer:get_version.fw_ver"))
    for d in details[:1]:
        if model := _text(d.get("Model")):
            facts.append(("model", normalise_model("MicroBT", model), "btminer:devdetails.Model"))
    if (s := serial(info.get("minersn"))) is not None:
        facts.append(("serial", s, "btminer:get_miner_info.minersn"))
    boards = [s for k in sorted(info) if k.startswith("boardsn") and (s := serial(info[k]))]
    if boards:
        facts.append(("board_serials", tuple(boards), "btminer:get_miner_info.boardsn*"))
    if (s := serial(info.get("powersn"))) is not None:
        facts.append(("psu_serial", s, "btminer:get_miner_info.powersn"))
    if (m := mac(info.get("mac"))) is not None:
        facts.append(("mac", m, "btminer:get_miner_info.mac"))
    if (r := rate(summary.get("Factory GHS"), "GH")) is not None:
        facts.append(("rated_hashrate", r, "btminer:summary.Factory GHS"))
    for key, unit in (("MHS av", "MH"), ("GHS av", "GH")):
        if (r := rate(summary.get(key), unit)) is not None:
            facts.append(("hashrate", r, f"btminer:summary.{key}"))
    if (p := whole(summary.get("Power"))) is not None and p > 0:
        facts.append(("power_w", p, "btminer:summary.Power"))
    if (e := whole(summary.get("Elapsed"))) is not None:
        facts.append(("uptime_s", e, "btminer:summary.Elapsed"))
    return facts


# ---- AxeOS (Bitaxe) and Vnish HTTP ---------------------------------------------------------


def from_axeos(info: Reply, asic: Reply | None) -> list[Fact]:
    facts: list[Fact] = [("vendor", "Bitaxe", "axeos:/api/system/info")]
    asic = asic or {}
    device = _text(asic.get("deviceModel")) or _text(info.get("deviceModel"))
    chip = _text(asic.get("ASICModel")) or _text(info.get("ASICModel"))
    if device:
        where = "asic" if asic.get("deviceModel") else "info"
        src = f"axeos:/api/system/{where}.deviceModel"
        name = f"{normalise_model('Bitaxe', device)}" + (f" ({chip})" if chip else "")
        facts.append(("model", name, src))
    elif chip:
        facts.append(("model", f"Bitaxe ({chip})", "axeos:/api/system/info.ASICModel"))
    facts.append(("firmware_family", "axeos", "axeos:/api/system/info"))
    for key in ("axeOSVersion", "version"):
        if v := _text(info.get(key)):
            facts.append(("firmware_version", v, f"axeos:/api/system/info.{key}"))
    if (m := mac(info.get("macAddr"))) is not None:
        facts.append(("mac", m, "axeos:/api/system/info.macAddr"))
    if (r := rate(info.get("hashRate"), "GH")) is not None:
        facts.append(("hashrate", r, "axeos:/api/system/info.hashRate"))
    if (r := rate(info.get("expectedHashrate"), "GH")) is not None:
        facts.append(("rated_hashrate", r, "axeos:/api/system/info.expectedHashrate"))
    if (p := number(info.get("power"))) is not None and p > 0:
        facts.append(("power_w", int(p.to_integral_value()), "axeos:/api/system/info.power"))
    if (e := whole(info.get("uptimeSeconds"))) is not None:
        facts.append(("uptime_s", e, "axeos:/api/system/info.uptimeSeconds"))
    return facts


def from_vnish(info: Reply) -> list[Fact]:
    facts: list[Fact] = [("firmware_family", "vnish", "vnish:/api/v1/info")]
    if v := _text(info.get("fw_version")):
        facts.append(("firmware_version", v, "vnish:/api/v1/info.fw_version"))
    if model := _text(info.get("miner")):
        vendor = vendor_of(model) or "Bitmain"
        facts.append(("vendor", vendor, "vnish:/api/v1/info.miner"))
        facts.append(("model", normalise_model(vendor, model), "vnish:/api/v1/info.miner"))
    if (s := serial(info.get("serial"))) is not None:
        facts.append(("serial", s, "vnish:/api/v1/info.serial"))
    system = info.get("system") if isinstance(info.get("system"), dict) else {}
    net = system.get("network_status") if isinstance(system.get("network_status"), dict) else {}
    if (m := mac(net.get("mac"))) is not None:
        facts.append(("mac", m, "vnish:/api/v1/info.system.network_status.mac"))
    return facts


def from_hints(vendor: str | None, family: str | None, version: str | None) -> list[Fact]:
    facts: list[Fact] = []
    if vendor:
        facts.append(("vendor", vendor, "stratum:user_agent"))
    if family:
        facts.append(("firmware_family", family, "stratum:user_agent"))
        if version:
            facts.append(("firmware_version", version, "stratum:user_agent"))
    return facts


def merge(fact_lists: Iterable[list[Fact]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Per field the first fact of the first list that has one: ``(values, sources)``."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for facts in fact_lists:
        for name, value, source in facts:
            if name not in values and value not in (None, "", ()):
                values[name] = value
                sources[name] = source
    return values, sources
