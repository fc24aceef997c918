"""`poolserver security-suite ...`: the accreditation testers' attack suite (issue 14).

* ``--target HOST:PORT [--config FILE] [--metrics URL] [--out DIR] --key KEYFILE
  [--lang kk,ru] [--only FAMILY|ID ...] [--quick] [--pid PID] [--i-am-authorized]``: runs the
  cases (``poolserver.security_suite``) against the pool listening at HOST:PORT, with honest
  reference miners mining through it from 127.0.0.1, and writes the signed protocol (JSON,
  HTML and PDF per language, ``manifest.json``, ``manifest.sig``). Exit 0 when every case held,
  1 otherwise, 2 on a usage error. A non-loopback target is refused without
  ``--i-am-authorized``.
* ``verify DIR --pubkey FILE``: checks the protocol's signature (the tester's public key) and
  every file's hash; names the file that changed. Exit 0 when intact.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from poolserver.config import Config, load_config

DEFAULT_LANGS = "kk,ru"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("security-suite",
                       help="attack a pool and write a signed test protocol (accreditation)")
    p.add_argument("--target", metavar="HOST:PORT", help="the pool's Stratum listener")
    p.add_argument("--config", dest="suite_config", metavar="FILE",
                   help="the pool's config (default: the global --config)")
    p.add_argument("--metrics", metavar="URL", help="metrics endpoint (default: [metrics])")
    p.add_argument("--web", metavar="URL", help="the web page and API (default: [web] host:port "
                   "of the config; its cases are not applicable when [web] is disabled)")
    p.add_argument("--out", metavar="DIR", help="protocol directory (default: "
                   "<data_dir>/security-protocols/<time>)")
    p.add_argument("--key", metavar="KEYFILE", help="the tester's Ed25519 signing key "
                   "(`poolserver report keygen --key FILE`)")
    p.add_argument("--lang", default=DEFAULT_LANGS, help="HTML/PDF languages (kk, ru)")
    p.add_argument("--only", nargs="+", default=[], metavar="FAMILY|ID",
                   help="run only these families or case ids")
    p.add_argument("--quick", action="store_true", help="the quick subset")
    p.add_argument("--pid", type=int, help="the pool's pid (default: found from the socket)")
    p.add_argument("--honest-rate", type=float, default=10.0,
                   help="shares/s each of the two honest miners submits (default 10)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--i-am-authorized", action="store_true",
                   help="confirm written authorization to attack a non-loopback target")
    p.set_defaults(func=_run)
    vsub = p.add_subparsers(dest="suite_command", metavar="verify", required=False)
    v = vsub.add_parser("verify", help="check a protocol's signature and files")
    v.add_argument("dir", metavar="DIR")
    v.add_argument("--pubkey", metavar="FILE", required=True, help="the tester's public key")
    v.set_defaults(func=_verify)


def _fail(message: str, code: int = 2) -> int:
    print(f"poolserver security-suite: {message}", file=sys.stderr)
    return code


def parse_target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--target: {text!r} is not HOST:PORT")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _run(args: argparse.Namespace) -> int:
    from poolserver.security_suite.model import all_cases, select

    if args.list:
        for c in all_cases():
            print(f"{c.id}\t{c.family}\t{'quick' if c.quick else ''}\t{c.title}")
        return 0
    if not args.target:
        return _fail("--target HOST:PORT is required (or `verify DIR --pubkey FILE`)")
    try:
        host, port = parse_target(args.target)
    except ValueError as exc:
        return _fail(str(exc))
    if not is_loopback(host) and not args.i_am_authorized:
        return _fail(f"--target: {host} is not a loopback address; attacking another host "
                     "needs the operator's written authorization: add --i-am-authorized")
    langs = [x.strip() for x in args.lang.split(",") if x.strip()]
    bad = [x for x in langs if x not in ("kk", "ru")]
    if bad or not langs:
        return _fail(f"--lang: {','.join(bad) or '(none)'} not among kk, ru")
    if not args.key:
        return _fail("--key: the tester's signing key is required (create one with "
                     "`poolserver report keygen --key FILE`)")
    from reporting.signing import VerifyError, load_key

    try:
        private_key = load_key(Path(args.key))
    except FileNotFoundError:
        return _fail(f"--key: no key at {args.key}")
    except VerifyError as exc:
        return _fail(f"--key: {exc}")
    config_path = args.suite_config or args.config
    config = load_config(config_path)
    try:
        cases = select(all_cases(), args.only, args.quick)
    except ValueError as exc:
        return _fail(str(exc))
    if not cases:
        return _fail("--only/--quick: no case selected")
    return asyncio.run(_main(args, config, config_path, host, port, cases, private_key, langs))


def _metrics_url(config: Config, given: str | None) -> str | None:
    if given:
        return given
    m = config.metrics
    if not m.enabled:
        return None
    host = "127.0.0.1" if m.host in ("0.0.0.0", "") else m.host
    return f"http://{host}:{m.port}/metrics"


def _web_url(config: Config, given: str | None) -> tuple[str | None, str]:
    """The web server's base URL, or None and why its cases cannot run."""
    if given:
        return given.rstrip("/"), ""
    w = config.web
    if not w.enabled:
        return None, "the web server is disabled in the operator's config ([web].enabled = false)"
    if w.port == 0:
        return None, "[web].port = 0 (an ephemeral port): give the web server's URL with --web"
    host = "127.0.0.1" if w.host in ("0.0.0.0", "") else "::1" if w.host == "::" else w.host
    return f"http://{host}:{w.port}" if ":" not in host else f"http://[{host}]:{w.port}", ""


async def _main(args: argparse.Namespace, config: Config, config_path: str | None, host: str,
                port: int, cases: list[Any], private_key: Any, langs: list[str]) -> int:
    from poolserver.security_suite import observe
    from poolserver.security_suite.context import Context, Identities
    from poolserver.security_suite.honest import HonestFleet
    from poolserver.security_suite.identities import ensure_identities
    from poolserver.security_suite.progress import make_progress
    from poolserver.security_suite.protocol import document, kz_time, who_ran, write_protocol
    from poolserver.security_suite.runner import Limits, measure_baseline, run_all
    from poolserver.storage_config import create_engine_from_config

    started = datetime.now(UTC)
    who = who_ran()
    pid = args.pid or observe.find_pid(host, port)
    if pid is None or not observe.alive(pid):
        return _fail(f"--pid: no process of this user listens on {host}:{port} (start the pool "
                     "or give --pid)")
    print(f"security-suite: run by {who['user']} on {who['host']} at {kz_time(started)} "
          f"against {host}:{port} (pool pid {pid}, config {config_path or '(defaults)'}); "
          f"{len(cases)} case(s)", file=sys.stderr)
    ids = Identities()
    sources = ""
    engine = create_engine_from_config(config)
    fleet = HonestFleet(host, port, [f"{ids.honest}.h1", f"{ids.honest}.h2"], args.honest_rate)
    try:
        added = await ensure_identities(engine, config, ids)
        if added:
            print(f"security-suite: registered test miners: {', '.join(added)}", file=sys.stderr)
            await asyncio.sleep(config.register.poll_interval_s + 1.0)  # the pool reloads
        ctx = Context(host, port, config, config_path, pid, engine, fleet,
                      _metrics_url(config, args.metrics), quick=args.quick, ids=ids)
        ctx.web_url, ctx.web_off = _web_url(config, args.web)
        try:
            ctx.listener  # noqa: B018 - validates that the port is a configured listener
        except ValueError as exc:
            return _fail(str(exc))
        sources = f"{ctx.first_source} and up"
        print(f"security-suite: honest miners from 127.0.0.1, attacks from {sources}",
              file=sys.stderr)  # fmt: skip
        honest_start = await ctx.shares_of(ids.honest)
        await fleet.start()
        # The attack traffic is generated here, on the pool's host: it yields the CPU to the
        # pool and the honest miners (started above, at normal priority), as a remote attacker
        # would not compete with them for it.
        with contextlib.suppress(OSError):
            os.nice(5)
        base = await measure_baseline(ctx, 3.0 if args.quick else 5.0)
        base.honest_start = honest_start
        if base.honest_rate <= 0:
            return _fail("the honest reference miners could not mine: "
                         f"{'; '.join(base.notes)} (is the port's difficulty one a CPU can "
                         "grind, and is the register enforcing licenses?)", 1)
        limits = Limits(min_window_s=1.5 if args.quick else 2.5)
        progress = make_progress()
        try:
            results = await run_all(ctx, cases, base, limits, progress)
        finally:
            progress.close()
            if ctx.web_tokens:
                revoked = await ctx.revoke_web_tokens()
                base.notes.append(f"web read tokens issued for {', '.join(revoked)} were "
                                  "revoked after the run")  # fmt: skip
    finally:
        await fleet.stop()
        await engine.dispose()
    finished = datetime.now(UTC)
    run = {**who, "target": f"{host}:{port}", "pid": pid, "config": config_path or "(defaults)",
           "started_utc": started.isoformat(timespec="seconds"),
           "finished_utc": finished.isoformat(timespec="seconds"),
           "started_kz": kz_time(started), "finished_kz": kz_time(finished),
           "quick": args.quick, "only": args.only, "authorized_flag": args.i_am_authorized,
           "registered_test_miners": added, "honest_source": "127.0.0.1",
           "attack_sources": sources}  # fmt: skip
    doc = document(run, results, base.notes)
    out = Path(args.out) if args.out else (
        config.data_path / "security-protocols" / started.astimezone().strftime("%Y%m%dT%H%M%S"))
    try:
        written = write_protocol(out, doc, langs, private_key)
    except ValueError as exc:
        return _fail(str(exc))
    s = doc["summary"]
    print(f"security-suite: {s['held']} of {s['total']} case(s) held, {s['failed']} failed, "
          f"{s['error']} error(s), {s['not applicable']} not applicable; signed protocol in "
          f"{out} ({len(written)} files)")
    return 0 if s["all_held"] else 1


def _verify(args: argparse.Namespace) -> int:
    from reporting.signing import VerifyError, load_key, verify_dir

    directory = Path(args.dir)
    if not directory.is_dir():
        return _fail(f"DIR: {directory} is not a directory")
    try:
        result = verify_dir(directory, load_key(Path(args.pubkey)))
    except FileNotFoundError:
        return _fail(f"--pubkey: no public key at {args.pubkey}")
    except VerifyError as exc:
        print(f"security-suite verify: FAILED: {exc}")
        return 1
    p = result.parameters
    print(f"security-suite verify: OK: {len(result.files)} file(s), signature valid "
          f"({p.get('target')} {p.get('started_utc')}, {p.get('result')}, tester "
          f"{p.get('tester')})")
    return 0
