"""`poolserver selfcheck`: which hash core is active, and a check against known vectors."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("selfcheck", help="show the active hash core and verify it on known vectors")
    p.set_defaults(func=run)


# Bitcoin mainnet genesis header and its hash (internal byte order).
GENESIS_HEADER = bytes.fromhex(
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b2"
    "7ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c"
)
GENESIS_HASH = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"


def selfcheck() -> tuple[bool, str]:
    from stratum import _hashcore_py, hashcore

    got = hashcore.sha256d(GENESIS_HEADER)[::-1].hex()
    ref = _hashcore_py.sha256d(GENESIS_HEADER)[::-1].hex()
    ok = got == GENESIS_HASH == ref
    n = 200_000
    t = time.perf_counter()
    hashcore.sha256d_many([GENESIS_HEADER] * n)
    rate = n / (time.perf_counter() - t)
    return ok, (
        f"hash core: {hashcore.backend()}; genesis block hash {got} "
        f"{'OK' if ok else 'MISMATCH'}; batch sha256d(80 B): {rate / 1e6:.2f} M/s"
    )


def run(args: argparse.Namespace) -> int:
    ok, line = selfcheck()
    print(line)
    return 0 if ok else 1
