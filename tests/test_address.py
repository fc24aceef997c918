"""Payout addresses: BIP173/BIP350 vectors, base58check, the recorded regtest addresses."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stratum.address import (
    PARAMS,
    AddressError,
    Encoding,
    address_to_script,
    bech32_decode,
    decode_segwit,
    encode_segwit,
)
from tests.conftest import load_fixture

# BIP173 / BIP350 test vectors (bitcoin/bips bip-0173 and bip-0350 mediawiki).
VALID_BECH32 = [
    "A12UEL5L",
    "a12uel5l",
    "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
    "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    "11qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqc8247j",
    "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    "?1ezyfcl",
]
VALID_BECH32M = [
    "A1LQFN3A",
    "a1lqfn3a",
    "an83characterlonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11sg7hg6",
    "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
    "11llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllludsr8",
    "split1checkupstagehandshakeupstreamerranterredcaperredlc445v",
    "?1v759aa",
]
INVALID_BECH32 = [
    " 1nwldj5",
    "\x7f1axkwrx",
    "\x801eym55h",
    "an84characterslonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1569pvx",
    "pzry9x0s0muk",
    "1pzry9x0s0muk",
    "x1b4n0q5v",
    "li1dgmt3",
    "de1lg7wt\xff",
    "A1G7SGD8",
    "10a06t8",
    "1qzzfhee",
]
INVALID_BECH32M = [
    " 1xj0phk",
    "\x7f1g6xzxy",
    "\x801vctc34",
    "an84characterslonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11d6pts4",
    "qyrz8wqd2c9m",
    "1qyrz8wqd2c9m",
    "y1b0jsk6g",
    "lt1igcx5c0",
    "in1muywd",
    "mm1crxm3i",
    "au1s5cgom",
    "M1VUXWEZ",
    "16plkw9",
    "1p2gdwpf",
]
VALID_ADDRESS = [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", "0014751e76e8199196d454941c45d1b3a323f1433bd6"),
    (
        "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",
        "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262",
    ),
    (
        "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
        "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6",
    ),
    ("BC1SW50QGDZ25J", "6002751e"),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "5210751e76e8199196d454941c45d1b3a323"),
    (
        "tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy",
        "0020000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
    ),
    (
        "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
        "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433",
    ),
    (
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
        "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
    ),
]
INVALID_ADDRESS = [
    "tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut",
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",
    "tb1z0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqglt7rf",
    "BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL",
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",
    "tb1q0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq24jc47",
    "bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4",
    "BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R",
    "bc1pw5dgrnzv",
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
    "BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P",
    "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq47Zagq",
    "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf",
    "tb1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vpggkg4j",
    "bc1gmk9yu",
]


@pytest.mark.parametrize("s", VALID_BECH32)
def test_valid_bech32_checksum(s):
    assert bech32_decode(s)[2] is Encoding.BECH32


@pytest.mark.parametrize("s", VALID_BECH32M)
def test_valid_bech32m_checksum(s):
    assert bech32_decode(s)[2] is Encoding.BECH32M


@pytest.mark.parametrize("s", VALID_BECH32 + VALID_BECH32M)
def test_flipping_one_character_breaks_checksum(s):
    pos = s.rfind("1")
    flipped = s[: pos + 1] + chr(ord(s[pos + 1]) ^ 1) + s[pos + 2 :]
    with pytest.raises(AddressError):
        bech32_decode(flipped)


@pytest.mark.parametrize("s", INVALID_BECH32)
def test_invalid_bech32(s):
    try:
        _, _, enc = bech32_decode(s)
    except AddressError:
        return
    assert enc is not Encoding.BECH32


@pytest.mark.parametrize("s", INVALID_BECH32M)
def test_invalid_bech32m(s):
    try:
        _, _, enc = bech32_decode(s)
    except AddressError:
        return
    assert enc is not Encoding.BECH32M


@pytest.mark.parametrize(("address", "script"), VALID_ADDRESS)
def test_valid_segwit_addresses(address, script):
    network = "main" if address.lower().startswith("bc1") else "test"
    got = address_to_script(address, network, allow_future_witness=True)
    assert got.hex() == script
    version, program = decode_segwit(address, PARAMS[network].hrp)
    assert encode_segwit(PARAMS[network].hrp, version, program) == address.lower()


@pytest.mark.parametrize("address", INVALID_ADDRESS)
def test_invalid_segwit_addresses(address):
    for network in ("main", "test"):
        with pytest.raises(AddressError) as err:
            address_to_script(address, network, allow_future_witness=True)
        assert err.value.address == address and err.value.reason


def test_future_witness_versions_refused_for_payouts():
    with pytest.raises(AddressError, match="no spending rules"):
        address_to_script("BC1SW50QGDZ25J", "main")
    assert address_to_script(VALID_ADDRESS[7][0], "main").hex() == VALID_ADDRESS[7][1]  # P2TR


@pytest.mark.parametrize(
    "entry", [e for e in load_fixture("addresses.json") if "scriptPubKey" in e]
)
def test_recorded_regtest_addresses(entry):
    assert address_to_script(entry["address"], "regtest").hex() == entry["scriptPubKey"]


@pytest.mark.parametrize(
    "entry", [e for e in load_fixture("addresses.json") if e["type"] == "invalid-on-regtest"]
)
def test_recorded_invalid_on_regtest(entry):
    with pytest.raises(AddressError) as err:
        address_to_script(entry["address"], "regtest")
    assert err.value.address == entry["address"]
    assert entry["address"] in str(err.value) or entry["address"] == ""
    if entry["validateaddress"]["error_locations"]:
        # bitcoind points at the same character we name
        assert f"position {entry['validateaddress']['error_locations'][0]}" in err.value.reason


def test_wrong_network_reasons_are_specific():
    with pytest.raises(AddressError, match="'tb' is not this network's 'bcrt'"):
        address_to_script("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", "regtest")
    with pytest.raises(AddressError, match="a main address"):
        address_to_script("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "regtest")
    with pytest.raises(AddressError, match="unknown network"):
        address_to_script("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "mainnet")
    with pytest.raises(AddressError, match="checksum"):
        address_to_script("1BoatSLRHtKNngkdXEeobR76b53LETtpyU", "main")
    with pytest.raises(AddressError, match="base58 character '0'"):
        address_to_script("1BoatSLRHtKNngkdXEeobR76b53LETtpy0", "main")


def test_mainnet_genesis_p2pkh():
    # the genesis block's coinbase pays 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa
    assert (
        address_to_script("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "main").hex()
        == "76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac"
    )


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58check(payload: bytes) -> str:
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _B58[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + out


@given(
    st.sampled_from(sorted(PARAMS)),
    st.booleans(),
    st.binary(min_size=20, max_size=20),
)
def test_base58_round_trip_every_network(network, p2sh, h):
    params = PARAMS[network]
    addr = _b58check(bytes((params.p2sh if p2sh else params.p2pkh,)) + h)
    script = address_to_script(addr, network)
    assert script == (b"\xa9\x14" + h + b"\x87" if p2sh else b"\x76\xa9\x14" + h + b"\x88\xac")


@given(
    st.sampled_from(sorted(PARAMS)),
    st.sampled_from([(0, 20), (0, 32), (1, 32)]),
    st.data(),
)
def test_segwit_round_trip_every_network(network, shape, data):
    version, size = shape
    program = data.draw(st.binary(min_size=size, max_size=size))
    addr = encode_segwit(PARAMS[network].hrp, version, program)
    assert (
        address_to_script(addr, network)
        == bytes((0x50 + version if version else 0, size)) + program
    )
    assert address_to_script(addr.upper(), network) == address_to_script(addr, network)
