"""`poolserver install-service [--prefix DIR] [--dry-run] [--user NAME]`: qazpool as a systemd
service running as its own non-root user (poolserver/service.py says what it creates)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "install-service", help="install the systemd unit, the qazpool user, /etc and /var/lib dirs"
    )
    p.add_argument(
        "--prefix", default="/", metavar="DIR",
        help="install under DIR (packaging, tests); paths inside stay the real ones",
    )  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the steps, change nothing")
    p.add_argument("--user", default="qazpool", help="service user and group (default qazpool)")
    p.set_defaults(func=_install)


def _install(args: argparse.Namespace) -> int:
    from poolserver.service import CONFIG_DIR, ServiceError, apply, plan, systemd_running

    config_path = Path(args.config) if args.config else CONFIG_DIR / "pool.toml"
    if not config_path.is_absolute():
        print("poolserver install-service: --config must be an absolute path", file=sys.stderr)
        return 2
    prefix = Path(args.prefix)
    try:
        steps = plan(user=args.user, config_path=config_path, prefix=prefix)
    except ServiceError as exc:
        print(f"poolserver install-service: {exc}", file=sys.stderr)
        return 1
    if args.dry_run:
        for s in steps:
            print(f"would {'keep' if s.keep else 'create'} {s.describe()}")
        return 0
    try:
        done = apply(steps, prefix)
    except (ServiceError, subprocess.CalledProcessError, OSError, KeyError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        print(f"poolserver install-service: {exc} {detail}".strip(), file=sys.stderr)
        return 1
    for line in done:
        print(line)
    if str(prefix) == "/" and systemd_running():
        subprocess.run(["systemctl", "daemon-reload"], check=False)
        print("ran systemctl daemon-reload")
    print(f"next: edit {config_path} ([[node.nodes]], [chain].payout_address, [storage].url), "
          "then: systemctl enable --now qazpool && journalctl -u qazpool -f")  # fmt: skip
    return 0
