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


# The slush pool "real-world example" share (testnet3 block 25096, solved by it): notify + submit.
SLUSH_SHARE = (
    bytes.fromhex("01000000010000000000000000000000000000000000000000000000000000000000000000ffff"
                  "ffff20020862062f503253482f04b8864e5008"),
    bytes.fromhex("08000002"),
    bytes.fromhex("00000001"),
    bytes.fromhex("072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9"
                  "903327048ed988ac00000000"),
    [],
    2,
    bytes.fromhex("f8b6164d19e2f65a2aae448f787fe66d61e57a48c0c6771b1e920b4400000000"),
    0x504E86ED,
    0x1C2AC4AF,
    0xB2957C02,
    (0xFFFF << 208).to_bytes(32, "little"),
    (0x2AC4AF << 200).to_bytes(32, "little"),  # nbits 1c2ac4af
)
SLUSH_HASH = "000000002076870fe65a2b6eeed84fa892c0db924f1482243a6247d931dcab32"


def selfcheck() -> tuple[bool, str]:
    from stratum import _hashcore_py, hashcore

    got = hashcore.sha256d(GENESIS_HEADER)[::-1].hex()
    ref = _hashcore_py.sha256d(GENESIS_HEADER)[::-1].hex()
    share_hash, meets_share, is_block = hashcore.check_share(*SLUSH_SHARE)
    share_ok = share_hash[::-1].hex() == SLUSH_HASH and meets_share and is_block
    ok = got == GENESIS_HASH == ref and share_ok
    n = 200_000
    t = time.perf_counter()
    hashcore.sha256d_many([GENESIS_HEADER] * n)
    rate = n / (time.perf_counter() - t)
    kernels = ", ".join(hashcore.c_impl._backends()) if hashcore.c_impl else "none (not built)"
    return ok, (
        f"hash core: {hashcore.backend()} (C kernels on this CPU: {kernels}); "
        f"genesis block hash {got} {'OK' if got == GENESIS_HASH == ref else 'MISMATCH'}; "
        f"slush share {'OK' if share_ok else 'MISMATCH'}; "
        f"batch sha256d(80 B): {rate / 1e6:.2f} M/s"
    )


def run(args: argparse.Namespace) -> int:
    ok, line = selfcheck()
    print(line)
    return 0 if ok else 1
