"""`poolserver probe ...`: the firmware probe on demand and its stored results (issue 15).

``probe run HOST`` asks every known API port of HOST (or only ``--port N``), prints what it
found with each field's source, compares it with the hardware register and stores it (when the
database is set up). ``[probe].allow`` applies: an address outside it is never contacted.
``probe list`` shows the latest result per machine with its register verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
from typing import Any

from firmware_probe import ApiPorts, Outcome, ProbeResult, parse_user_agent, probe_host
from firmware_probe.result import FIELDS
from poolserver.config import Config, load_config
from poolserver.register.hardware import format_hashrate
from poolserver.register.timeutil import show


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="firmware probe: identify a machine, list results")
    psub = p.add_subparsers(dest="probe_command", metavar="ACTION", required=True)
    run = psub.add_parser("run", help="probe HOST now (every known API port, read-only)")
    run.add_argument("host", help="IP address or name (must be inside [probe].allow)")
    run.add_argument("--port", type=int, help="try every API on this port only")
    run.add_argument("--account", default="", help="the miner account it works for (register)")
    run.add_argument("--user-agent", default="", help="its Stratum user agent (a hint)")
    run.add_argument("--json", action="store_true", help="machine-readable output")
    run.set_defaults(func=_run)
    ls = psub.add_parser("list", help="latest result per machine with its register verdict")
    ls.add_argument("--account", help="only this miner account's machines")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=_list)


def _fail(text: str, code: int = 1) -> int:
    print(f"poolserver probe: {text}", file=sys.stderr)
    return code


def _resolve(host: str) -> str | None:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return None
    return str(infos[0][4][0]) if infos else None


def _run(args: argparse.Namespace) -> int:
    from poolserver.probe_service import (
        allowed,
        check_probe_config,
        limits_from,
        parse_allow,
        ports_from,
    )

    config = load_config(args.config)
    check_probe_config(config.probe)
    if args.port is not None and not 1 <= args.port <= 65535:
        return _fail(f"--port: {args.port} is not 1..65535", 2)
    ip = _resolve(args.host)
    if ip is None:
        return _fail(f"cannot resolve {args.host!r}")
    nets = parse_allow(config.probe.allow)
    if not allowed(ip, nets):
        listed = ", ".join(str(n) for n in nets) or "empty"
        return _fail(
            f"REFUSED by the allow-list: {args.host} ({ip}) is outside [probe].allow "
            f"({listed}); nothing was sent to it. Add its network to [probe].allow to probe it."
        )
    ports = ApiPorts.all_on(args.port) if args.port else ports_from(config.probe)
    hints = parse_user_agent(args.user_agent)
    result = asyncio.run(probe_host(ip, ports, limits_from(config.probe), hints))
    stored = asyncio.run(_store(config, result, args))
    if args.json:
        out = result.to_dict()
        out["register"] = stored
        print(json.dumps(out, indent=2, sort_keys=False))
    else:
        _print_result(result, stored)
    return 0 if result.outcome in (Outcome.IDENTIFIED, Outcome.PARTIAL) else 1


async def _store(config: Config, result: ProbeResult, args: argparse.Namespace) -> dict[str, Any]:
    """Compare with the register and store; a database that is not set up is reported, the
    probe result is printed anyway."""
    from poolserver.probe_store import ProbeStore
    from poolserver.probe_verdict import judge
    from poolserver.register.repository import RegisterRepository
    from poolserver.storage import schema
    from poolserver.storage_config import create_engine_from_config

    engine = create_engine_from_config(config)
    try:
        await schema.check_schema(engine)
        repo = RegisterRepository(engine, network=config.register.network or config.chain.network)
        register = {m.serial: m for m in await repo.machines()}
        store = ProbeStore(engine)
        observed = None
        if args.account and result.hashrate:
            observed = result.hashrate + sum(
                p.result.hashrate or 0
                for p in await store.latest(args.account)
                if p.result.host != result.host and p.result.outcome in (Outcome.IDENTIFIED,
                                                                          Outcome.PARTIAL)
            )  # fmt: skip
        verdict = judge(result, args.account, register, observed,
                        config.register.capacity_limit_pct)  # fmt: skip
        row = await store.save(result, verdict, account=args.account,
                               user_agent=args.user_agent, trigger="cli")  # fmt: skip
        return {"verdict": verdict.summary, "findings": verdict.as_json(), "stored_id": row}
    except (schema.SchemaError, OSError) as exc:
        return {"verdict": "not compared", "findings": [], "stored_id": None,
                "error": f"database: {exc}"}  # fmt: skip
    finally:
        await engine.dispose()


def _value(name: str, value: Any) -> str:
    if value is None or value == [] or value == ():
        return "unknown" if name in ("serial", "model", "firmware_version") else "-"
    if name in ("rated_hashrate", "hashrate"):
        return format_hashrate(int(value))
    if name == "power_w":
        return f"{value} W"
    if name == "uptime_s":
        return f"{int(value) // 3600} h {int(value) % 3600 // 60} min"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _print_result(result: ProbeResult, stored: dict[str, Any]) -> None:
    print(f"host              {result.host}")
    print(f"outcome           {result.outcome.value}")
    if result.apis:
        print(f"answered          {', '.join(result.apis)}")
    for name in FIELDS:
        value = getattr(result, name)
        source = result.sources.get(name, "")
        print(f"{name:<17} {_value(name, value)}" + (f"   [{source}]" if source else ""))
    if result.repairs:
        print(f"repaired          {', '.join(result.repairs)}")
    if result.detail:
        print(f"detail            {result.detail}")
    print(f"register          {stored['verdict']}")
    for f in stored["findings"]:
        print(f"  {f['finding']}: {f['detail']}")
    if stored.get("error"):
        print(f"not stored        {stored['error']}")


def _list(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    return asyncio.run(_list_async(config, args))


async def _list_async(config: Config, args: argparse.Namespace) -> int:
    from poolserver.probe_store import ProbeStore
    from poolserver.storage_config import run_on_database

    async def body(engine: Any) -> int:
        rows = await ProbeStore(engine).latest(args.account)
        if args.json:
            out = []
            for p in rows:
                d = p.result.to_dict()
                d.pop("evidence")
                out.append({
                    "machine": p.machine_key, "probed_at": p.probed_at.isoformat(),
                    "account": p.account, "worker": p.worker, "user_agent": p.user_agent,
                    "trigger": p.trigger, "verdict": p.verdict, "findings": p.findings, **d,
                })  # fmt: skip
            print(json.dumps(out, indent=2))
            return 0
        print("probed (UTC+5)\thost\tworker\toutcome\tmodel\tfirmware\tserial\thashrate\tregister")
        for p in rows:
            r = p.result
            fw = " ".join(x for x in (r.firmware_family, r.firmware_version) if x) or "-"
            worker = ".".join(x for x in (p.account, p.worker) if x) or "-"
            rate = format_hashrate(r.hashrate) if r.hashrate else "-"
            print(
                f"{show(p.probed_at)}\t{r.host}\t{worker}\t{r.outcome.value}\t{r.model or '-'}\t"
                f"{fw}\t{r.serial or 'unknown'}\t{rate}\t{p.verdict}"
            )
        return 0

    return await run_on_database(config, "probe list", body)
