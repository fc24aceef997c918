"""The hash core against the recorded vectors, in every implementation: the C extension with
each kernel this CPU has (SHA-NI and portable C here) and the hashlib reference."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from stratum import _hashcore_py as python_impl
from stratum import hashcore
from tests.conftest import load_fixture, stratum_vectors

c_impl = hashcore.c_impl
C_BACKENDS: tuple[str, ...] = c_impl._backends() if c_impl is not None else ()

IMPLS = [pytest.param(("c", b), id=f"c-{b}") for b in C_BACKENDS] + [
    pytest.param(("python", None), id="python")
]

DIFF1 = 0xFFFF << 208
V = stratum_vectors()


@pytest.fixture(params=IMPLS)
def core(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    kind, backend = request.param
    if kind == "python":
        yield python_impl
        return
    assert c_impl is not None
    c_impl._set_backend(backend)
    try:
        yield c_impl
    finally:
        c_impl._set_backend("auto")


def rev(hex_display: str) -> bytes:
    """Display hex (block explorers) -> internal byte order."""
    return bytes.fromhex(hex_display)[::-1]


def stratum_prevhash(hex_notify: str) -> bytes:
    """mining.notify prevhash (eight byte-swapped 32-bit words) -> the 32 header bytes."""
    raw = bytes.fromhex(hex_notify)
    return b"".join(raw[i : i + 4][::-1] for i in range(0, 32, 4))


def nbits_target(nbits: int) -> int:
    return (nbits & 0xFFFFFF) << (8 * ((nbits >> 24) - 3))


def le(target: int) -> bytes:
    return target.to_bytes(32, "little")


def header_bytes(
    version: int, prev: bytes, root: bytes, ntime: int, nbits: int, nonce: int
) -> bytes:
    return struct.pack("<I", version) + prev + root + struct.pack("<III", ntime, nbits, nonce)


# --- the build --------------------------------------------------------------------------------


def test_c_extension_is_built_and_picks_the_best_kernel() -> None:
    assert c_impl is not None, "stratum._hashcore is not built: run scripts/bootstrap.sh"
    assert hashcore.backend() == c_impl.backend() == C_BACKENDS[0]
    assert set(C_BACKENDS) <= {"sha-ni", "armv8-ce", "portable-c"}
    assert C_BACKENDS[-1] == "portable-c"


def test_set_backend_rejects_unknown_names() -> None:
    assert c_impl is not None
    with pytest.raises(ValueError, match="backend must be"):
        c_impl._set_backend("sha-512")
    with pytest.raises(TypeError, match="backend must be str, not int"):
        c_impl._set_backend(1)
    assert c_impl._set_backend("portable") == "portable-c"
    assert c_impl._set_backend("auto") == C_BACKENDS[0]
    # A name is matched whole (not up to an embedded NUL) and one that isn't UTF-8 encodable is
    # just another unknown name, not a UnicodeEncodeError.
    for bad in (f"{C_BACKENDS[0]}\0", "portable\0x", "\ud800"):
        with pytest.raises(ValueError, match="backend must be"):
            c_impl._set_backend(bad)
    assert [c_impl._set_backend(name) for name in C_BACKENDS] == list(C_BACKENDS)
    assert c_impl._set_backend("auto") == C_BACKENDS[0]


def test_nbits_helper_matches_the_difficulty_vector() -> None:
    v = V["difficulty_and_nbits"]
    for nbits, target in v["nbits_examples"].items():
        assert nbits_target(int(nbits, 16)) == int(target, 16)
    for diff, target in v["pool_target_for_difficulty"].items():
        assert DIFF1 // int(diff) == int(target, 16)


# --- headers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["bitcoin_mainnet_genesis_header", "bitcoin_mainnet_block_125552_header"]
)
def test_known_headers(core: ModuleType, name: str) -> None:
    v = V[name]
    header = bytes.fromhex(v["header_hex"])
    assert core.sha256d(header) == bytes.fromhex(v["expected_hash_internal_hex"])
    assert core.sha256d(header)[::-1].hex() == v["expected_block_hash_display"]
    version, ntime, nbits, nonce = struct.unpack("<I", header[:4]) + struct.unpack(
        "<III", header[68:]
    )
    f = v["fields"]
    assert (version, ntime, nbits, nonce) == (
        f["version"],
        f["ntime"],
        int(f["nbits"], 16),
        f["nonce"],
    )
    got = core.header_hash(version, header[4:36], header[36:68], ntime, nbits, nonce)
    assert got == bytes.fromhex(v["expected_hash_internal_hex"])
    assert core.sha256d_many([header, header]) == [got, got]


def test_genesis_merkle_root_is_its_coinbase_txid(core: ModuleType) -> None:
    v = V["bitcoin_mainnet_genesis_header"]
    root = core.merkle_root(bytes.fromhex(v["coinbase_tx_hex"]), [])
    assert root == rev(v["expected_merkle_root_display"])
    assert root == bytes.fromhex(v["header_hex"])[36:68]


def test_esp_miner_header_diff_18(core: ModuleType) -> None:
    v = V["esp_miner_share_diff_18"]
    i = v["inputs"]
    args = (
        int(i["version"], 16),
        stratum_prevhash(i["prevhash_stratum"]),
        bytes.fromhex(i["merkle_root_internal"]),
        int(i["ntime"], 16),
        int(i["nbits"], 16),
        int(i["nonce"], 16),
    )
    assert header_bytes(*args).hex() == v["expected"]["header_hex"]
    h = core.header_hash(*args)
    assert h[::-1].hex() == v["expected"]["hash_display"]
    assert DIFF1 // int.from_bytes(h, "little") == v["expected"]["int_diff"]


def test_esp_miner_bm1397_merkle_root(core: ModuleType) -> None:
    v = V["esp_miner_bm1397_notify_merkle_root"]
    _, prevhash, coinb1, coinb2, branch, version, nbits, ntime, _ = v["notify_params"]
    coinbase = bytes.fromhex(coinb1 + v["extranonce1"] + v["extranonce2"] + coinb2)
    root = core.merkle_root(coinbase, [bytes.fromhex(b) for b in branch])
    assert root.hex() == v["expected"]["merkle_root_internal"]
    header = header_bytes(
        int(version, 16), stratum_prevhash(prevhash), root, int(ntime, 16), int(nbits, 16), 0
    )
    assert header.hex() == v["expected"]["header_with_nonce0_hex"]
    assert core.sha256d(header) == python_impl.sha256d(header)


# --- whole shares -------------------------------------------------------------------------------


def share_from_notify(
    notify: list[Any],
    en1: str,
    en2: str,
    ntime: str,
    nonce: str,
    version_bits: str | None,
    mask: int,
) -> dict[str, Any]:
    _, prevhash, coinb1, coinb2, branch, version, nbits, _, _ = notify
    return {
        "coinb1": bytes.fromhex(coinb1),
        "extranonce1": bytes.fromhex(en1),
        "extranonce2": bytes.fromhex(en2),
        "coinb2": bytes.fromhex(coinb2),
        "branch": [bytes.fromhex(b) for b in branch],
        "version": int(version, 16),
        "prevhash": stratum_prevhash(prevhash),
        "ntime": int(ntime, 16),
        "nbits": int(nbits, 16),
        "nonce": int(nonce, 16),
        "version_bits": int(version_bits, 16) if version_bits else 0,
        "version_mask": mask if version_bits else 0,
    }


def share_args(s: dict[str, Any], share_target: int, network_target: int) -> tuple:
    return (
        s["coinb1"],
        s["extranonce1"],
        s["extranonce2"],
        s["coinb2"],
        s["branch"],
        s["version"],
        s["prevhash"],
        s["ntime"],
        s["nbits"],
        s["nonce"],
        le(share_target),
        le(network_target),
        s["version_bits"],
        s["version_mask"],
    )


def share_cases() -> list[Any]:
    cases = []
    v = V["slush_stratum_docs_real_world_example"]
    _, _, en2, ntime, nonce = v["submit_params"]
    s = share_from_notify(
        v["notify_params"], v["subscribe_response"]["result"][1], en2, ntime, nonce, None, 0
    )
    e = v["expected"]
    cases.append(
        pytest.param(
            s,
            e["coinbase_hex"],
            e["merkle_root_internal"],
            e["header_hex"],
            e["hash_display"],
            DIFF1,
            True,
            id="slush",
        )
    )

    v = V["public_pool_testnet_gbt_to_share"]
    _, _, en2, ntime, nonce, vbits = v["submit_params"]
    mask = int(v["configure_response"]["result"]["version-rolling.mask"], 16)
    s = share_from_notify(v["notify_params"], v["extranonce1"], en2, ntime, nonce, vbits, mask)
    e = v["expected"]
    assert e["accepted_at_512"]
    cases.append(
        pytest.param(
            s,
            e["coinbase_hex"],
            e["merkle_root_internal"],
            e["header_hex"],
            e["hash_display"],
            DIFF1 // v["session_difficulty"],
            False,
            id="public-pool-version-rolling",
        )
    )

    v = V["esp_miner_mainnet_share_diff_683"]
    nl = v["notify_like"]
    notify = [
        "",
        nl["prevhash"],
        nl["coinb1"],
        nl["coinb2"],
        nl["merkle_branch"],
        nl["version"],
        nl["nbits"],
        nl["ntime"],
        False,
    ]
    s = share_from_notify(
        notify, v["extranonce1"], v["extranonce2"], nl["ntime"], v["nonce"], None, 0
    )
    e = v["expected"]
    coinbase = nl["coinb1"] + v["extranonce1"] + v["extranonce2"] + nl["coinb2"]
    cases.append(
        pytest.param(
            s,
            coinbase,
            e["merkle_root_internal"],
            e["header_hex"],
            e["hash_display"],
            DIFF1 // e["int_diff"],
            False,
            id="esp-miner-683",
        )
    )

    for name in ("solved_block_case.json", "solved_block_case_empty_mempool.json"):
        f = load_fixture(name)
        sub = f["submit"]
        s = share_from_notify(
            f["mining_notify_params"],
            f["extranonce1"],
            f["extranonce2"],
            sub["ntime"],
            sub["nonce"],
            sub["version_bits"],
            int(f["version_rolling_mask"], 16),
        )
        # regtest: the network target is easier than difficulty 1; use it as the share target
        assert nbits_target(s["nbits"]) == int(f["target"], 16)
        cases.append(
            pytest.param(
                s,
                f["coinbase_tx_nonwitness"],
                f["merkle_root_internal"],
                f["header"],
                f["block_hash"],
                int(f["target"], 16),
                True,
                id=name,
            )
        )
    return cases


@pytest.mark.parametrize(
    ("share", "coinbase_hex", "root_hex", "header_hex", "hash_display", "share_target", "is_block"),
    share_cases(),
)
def test_share_path(
    core: ModuleType,
    share: dict[str, Any],
    coinbase_hex: str,
    root_hex: str,
    header_hex: str,
    hash_display: str,
    share_target: int,
    is_block: bool,
) -> None:
    coinbase = share["coinb1"] + share["extranonce1"] + share["extranonce2"] + share["coinb2"]
    assert coinbase.hex() == coinbase_hex
    root = core.merkle_root(coinbase, share["branch"])
    assert root.hex() == root_hex
    header = bytes.fromhex(header_hex)
    assert header[36:68] == root
    assert core.sha256d(header)[::-1].hex() == hash_display
    network = nbits_target(share["nbits"])
    h, meets_share, meets_network = core.check_share(*share_args(share, share_target, network))
    assert h[::-1].hex() == hash_display
    assert (meets_share, meets_network) == (True, is_block)
    # The targets are inclusive: hash == target meets it, hash == target + 1 ... does not.
    value = int.from_bytes(h, "little")
    assert core.check_share(*share_args(share, value, value))[1:] == (True, True)
    assert core.check_share(*share_args(share, value - 1, value - 1))[1:] == (False, False)
    # And as one batch, with the 12-argument form when there is no version rolling.
    item = share_args(share, share_target, network)
    items = [item, item[:12]] if not share["version_mask"] else [item, item]
    assert core.check_shares(items) == [(h, True, is_block)] * 2


def test_slush_is_a_block_at_its_nbits(core: ModuleType) -> None:
    v = V["slush_stratum_docs_real_world_example"]
    assert nbits_target(int(v["notify_params"][6], 16)) == int(
        v["expected"]["network_target_hex"], 16
    )


@pytest.mark.parametrize(
    "case", V["version_rolling_rules"]["cases"], ids=lambda c: c["header_version"]
)
def test_version_rolling(core: ModuleType, case: dict[str, str]) -> None:
    mask = int(V["version_rolling_rules"]["mask"], 16)
    prev, coinb1, coinb2 = bytes(range(32)), b"\x01" * 50, b"\x02" * 70
    branch = [bytes([i]) * 32 for i in range(3)]
    h, _, _ = core.check_share(
        coinb1,
        b"en1!",
        b"en2!",
        coinb2,
        branch,
        int(case["job_version"], 16),
        prev,
        5,
        6,
        7,
        le(0),
        le(0),
        int(case["version_bits"], 16),
        mask,
    )
    root = python_impl.merkle_root(coinb1 + b"en1!en2!" + coinb2, branch)
    header = header_bytes(int(case["header_version"], 16), prev, root, 5, 6, 7)
    assert h == python_impl.sha256d(header)


def test_shares_of_every_shape_in_one_batch(core: ModuleType) -> None:
    """Lanes group shares of equal shape; mixed lengths and depths must still come out right."""
    import random

    rng = random.Random(7)
    items = []
    for i in range(200):
        items.append(
            (
                rng.randbytes(rng.choice([0, 10, 63, 64, 65, 128, 200])),
                rng.randbytes(4),
                rng.randbytes(rng.choice([0, 4, 8])),
                rng.randbytes(rng.choice([0, 1, 55, 56, 120])),
                [rng.randbytes(32) for _ in range(rng.choice([0, 1, 2, 12]))],
                rng.getrandbits(32),
                rng.randbytes(32),
                i,
                rng.getrandbits(32),
                rng.getrandbits(32),
                rng.randbytes(32),
                rng.randbytes(32),
                rng.getrandbits(32),
                rng.getrandbits(32),
            )
        )
    assert core.check_shares(items) == [python_impl.check_share(*it) for it in items]


def test_selfcheck_names_the_kernel_and_passes() -> None:
    from poolserver.commands.selfcheck import selfcheck

    ok, line = selfcheck()
    assert ok, line
    assert line.startswith(f"hash core: {hashcore.backend()} ")
    assert "genesis block hash" in line and "slush share OK" in line
