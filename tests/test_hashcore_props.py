"""Hash core properties: the C core (each kernel) agrees with hashlib on random input, batches
equal their items, bad arguments raise the reference's exception type and message, and
concurrent batches (which hash without the GIL) don't disturb each other."""

from __future__ import annotations

import gc
import hashlib
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratum import _hashcore_py as python_impl
from stratum import hashcore

c_impl = hashcore.c_impl
pytestmark = pytest.mark.skipif(c_impl is None, reason="stratum._hashcore is not built")
C_BACKENDS: tuple[str, ...] = c_impl._backends() if c_impl is not None else ()
# The backend fixture is meant to hold for all examples of a test: it only selects the kernel.
PROPS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(params=C_BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    assert c_impl is not None
    c_impl._set_backend(request.param)
    try:
        yield request.param
    finally:
        c_impl._set_backend("auto")


def hashlib_sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


u32 = st.integers(0, 0xFFFFFFFF)
h32 = st.binary(min_size=32, max_size=32)
shares = st.tuples(
    st.binary(max_size=200),  # coinb1
    st.binary(max_size=8),  # extranonce1
    st.binary(max_size=8),  # extranonce2
    st.binary(max_size=300),  # coinb2
    st.lists(h32, max_size=20),  # branch
    u32,
    h32,
    u32,
    u32,
    u32,  # version, prevhash, ntime, nbits, nonce
    h32,
    h32,  # share_target, network_target
    u32,
    u32,  # version_bits, version_mask
)


# --- agreement --------------------------------------------------------------------------------


@PROPS
@given(data=st.binary(max_size=1000))
def test_sha256d_matches_hashlib(backend: str, data: bytes) -> None:
    assert c_impl is not None
    assert c_impl.sha256d(data) == hashlib_sha256d(data)


def test_sha256d_at_every_padding_boundary(backend: str) -> None:
    assert c_impl is not None
    for n in range(0, 260):
        data = bytes(range(256))[: n % 256] * (1 + n // 256)
        assert c_impl.sha256d(data) == hashlib_sha256d(data), n
    big = bytes(range(256)) * 400  # long enough to be hashed without the GIL
    assert c_impl.sha256d(big) == hashlib_sha256d(big)


@PROPS
@given(share=shares)
def test_check_share_matches_reference(backend: str, share: tuple) -> None:
    assert c_impl is not None
    expected = python_impl.check_share(*share)
    assert c_impl.check_share(*share) == expected
    assert c_impl.merkle_root(b"".join(share[:4]), share[4]) == python_impl.merkle_root(
        b"".join(share[:4]), share[4]
    )


@PROPS
@given(share=shares, use_hash_as_target=st.booleans())
def test_targets_compare_as_little_endian_integers(
    backend: str, share: tuple, use_hash_as_target: bool
) -> None:
    assert c_impl is not None
    h, _, _ = c_impl.check_share(*share)
    value = int.from_bytes(h, "little")
    target = value if use_hash_as_target else int.from_bytes(share[10], "little")
    s = list(share)
    s[10] = target.to_bytes(32, "little")
    s[11] = max(value - 1, 0).to_bytes(32, "little")
    _, meets_share, meets_network = c_impl.check_share(*s)
    assert meets_share == (value <= target)
    assert meets_network == (value == 0)


@PROPS
@given(items=st.lists(shares, max_size=40), same_job=st.booleans())
def test_check_shares_equals_items(backend: str, items: list[tuple], same_job: bool) -> None:
    assert c_impl is not None
    if same_job and items:  # one job: shared coinb1/coinb2/branch objects, as the pool sends them
        first = items[0]
        items = [(*first[:2], it[2], first[3], first[4], *it[5:]) for it in items]
    expected = [python_impl.check_share(*it) for it in items]
    assert c_impl.check_shares(items) == expected
    assert python_impl.check_shares(items) == expected


@PROPS
@given(items=st.lists(st.one_of(st.binary(min_size=80, max_size=80), st.binary(max_size=200))))
def test_sha256d_many_equals_items(backend: str, items: list[bytes]) -> None:
    assert c_impl is not None
    assert c_impl.sha256d_many(items) == [hashlib_sha256d(x) for x in items]


def test_long_batches_cross_chunk_boundaries(backend: str) -> None:
    assert c_impl is not None
    headers = [i.to_bytes(80, "little") for i in range(5000)]
    assert c_impl.sha256d_many(headers) == [hashlib_sha256d(h) for h in headers]
    branch = [bytes([i]) * 32 for i in range(5)]
    items = [
        (
            b"c1",
            b"e1",
            i.to_bytes(8, "little"),
            b"c2" * 40,
            branch,
            2,
            bytes(32),
            3,
            4,
            i,
            bytes(32),
            bytes(32),
        )
        for i in range(700)
    ]
    assert c_impl.check_shares(items) == python_impl.check_shares(items)


def test_buffer_types_are_accepted_like_the_reference(backend: str) -> None:
    assert c_impl is not None
    data = bytes(range(100))
    for view in (bytearray(data), memoryview(data), memoryview(bytes(range(200)))[::2]):
        assert c_impl.sha256d(view) == python_impl.sha256d(view)
        assert c_impl.sha256d_many([view]) == python_impl.sha256d_many([view])
    branch = (bytearray(32), memoryview(bytes(32)))  # a tuple is a sequence too
    args = (
        bytearray(b"a"),
        memoryview(b"b"),
        b"c",
        bytearray(b"d"),
        branch,
        1,
        bytearray(32),
        2,
        3,
        4,
        memoryview(bytes(32)),
        bytearray(32),
    )
    assert c_impl.check_share(*args) == python_impl.check_share(*args)
    assert c_impl.check_shares([list(args)]) == python_impl.check_shares([list(args)])


def test_keyword_arguments_bind_like_the_reference() -> None:
    assert c_impl is not None
    args = dict(
        coinb1=b"a",
        extranonce1=b"b",
        extranonce2=b"c",
        coinb2=b"d",
        branch=[],
        version=1,
        prevhash=bytes(32),
        ntime=2,
        nbits=3,
        nonce=4,
        share_target=bytes(32),
        network_target=bytes(32),
        version_mask=0xFF,
    )
    assert c_impl.check_share(**args) == python_impl.check_share(**args)
    hh = dict(version=1, prevhash=bytes(32), merkle_root=bytes(32), ntime=2, nbits=3, nonce=4)
    assert c_impl.header_hash(**hh) == python_impl.header_hash(**hh)
    assert c_impl.merkle_root(coinbase=b"x", branch=[]) == python_impl.merkle_root(b"x", [])
    for bad in (
        lambda: c_impl.check_share(b"a"),
        lambda: c_impl.check_share(**args, bogus=1),
        lambda: c_impl.check_share(b"a", **args),
        lambda: c_impl.header_hash(*range(7)),
    ):
        with pytest.raises(TypeError):
            bad()


def test_concurrent_batches_are_independent() -> None:
    """Batches release the GIL while hashing; threads must not see each other's work."""
    assert c_impl is not None
    results: dict[int, bool] = {}

    def worker(seed: int) -> None:
        items = [
            (
                bytes([seed]) * 60,
                b"e1",
                i.to_bytes(8, "little"),
                b"c2" * 50,
                [bytes([seed, i % 256]) * 16] * 8,
                seed,
                bytes(32),
                i,
                5,
                6,
                bytes([0xFF]) * 32,
                bytes(32),
            )
            for i in range(600)
        ]
        expected = python_impl.check_shares(items)
        headers = [bytes([seed]) * 76 + i.to_bytes(4, "little") for i in range(3000)]
        ok = True
        for _ in range(3):
            ok &= c_impl.check_shares(items) == expected
            ok &= c_impl.sha256d_many(headers) == [hashlib_sha256d(h) for h in headers]
        results[seed] = ok

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == dict.fromkeys(range(4), True)


SMALL_STACK_SCRIPT = """
import sys, threading
from stratum import _hashcore as c_impl, _hashcore_py as python_impl
threading.stack_size(64 * 1024)
item = (b"c1", b"e1", b"e2", b"c2", [bytes(32)] * 12, 1, bytes(32), 2, 3, 4, bytes(32), bytes(32))
items = [item] * 300
out = []
for impl in (python_impl, c_impl):
    t = threading.Thread(target=lambda: out.append(impl.check_shares(items)))
    t.start()
    t.join()
print(len(out), len(out[0]), out[0] == out[1])
"""


def test_check_shares_runs_on_a_small_thread_stack() -> None:
    """A thread with a 64 KiB stack (threading.stack_size; musl's default is 128 KiB) can check
    a batch: the per-chunk arrays live on the heap, not in a 100 KiB C stack frame. In a
    subprocess, because a stack overflow kills the process."""
    done = subprocess.run(
        [sys.executable, "-c", SMALL_STACK_SCRIPT],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["2", "300", "True"]


def _with(index: int, value: object) -> list[object]:
    item: list[object] = [b"c1", b"e1", b"e2", b"c2", [bytes(32)] * 3, 1, bytes(32), 2, 3, 4]
    item += [bytes(32), bytes(32)]
    item[index] = value
    return item


GOOD_ITEMS = [tuple(_with(0, b"c1"))] * 5 + [_with(2, bytearray(b"e2"))] * 3
LEAK_CASES: dict[str, Callable[[], object]] = {
    "sha256d_many, bad item after copied ones": lambda: c_impl.sha256d_many(
        [b"a"] * 20 + [bytearray(b"x")] * 5 + [None]
    ),
    "sha256d_many, copied items": lambda: c_impl.sha256d_many([bytearray(80)] * 20),
    "check_shares, bad branch entry": lambda: c_impl.check_shares(
        [*GOOD_ITEMS, _with(4, [bytes(32), bytearray(32), None])]
    ),
    "check_shares, bad item in the second chunk": lambda: c_impl.check_shares(
        GOOD_ITEMS * 33 + [_with(9, "x")]
    ),
    "check_shares, bad copied target": lambda: c_impl.check_shares(
        [*GOOD_ITEMS, _with(11, memoryview(bytes(31)))]
    ),
    "check_shares, copied arguments": lambda: c_impl.check_shares(GOOD_ITEMS * 2),
    "check_share, bad target": lambda: c_impl.check_share(*_with(10, bytearray(33))),
    "check_share, bad branch": lambda: c_impl.check_share(*_with(4, (bytearray(32), 5))),
    "merkle_root, bad branch": lambda: c_impl.merkle_root(bytearray(b"x"), [bytearray(32), b"1"]),
    "header_hash, bad nonce": lambda: c_impl.header_hash(1, bytearray(32), bytes(32), 1, 2, -1),
}


@pytest.mark.parametrize("name", LEAK_CASES)
def test_calls_and_their_error_paths_do_not_leak(name: str) -> None:
    """Every reference taken (copies of bytearray/memoryview arguments, tuple snapshots, result
    objects) is released, on success and when an argument fails mid-batch: a thousand calls
    leave the interpreter's allocated block count where it was. (ASan runs without leak
    detection, and it cannot see a leaked Python reference anyway.)"""
    fn = LEAK_CASES[name]

    def run(times: int) -> None:
        for _ in range(times):
            try:
                fn()
            except (TypeError, ValueError):
                pass

    run(100)
    gc.collect()
    before = sys.getallocatedblocks()
    run(1000)
    gc.collect()
    assert sys.getallocatedblocks() - before < 100


# --- errors: same type and message as the reference -------------------------------------------


def outcome(fn: Callable[[], Any]) -> tuple[type[BaseException], str] | Any:
    try:
        return fn()
    except (TypeError, ValueError) as exc:
        return type(exc), str(exc)


GOOD_SHARE: dict[str, Any] = dict(
    coinb1=b"c1",
    extranonce1=b"e1",
    extranonce2=b"e2",
    coinb2=b"c2",
    branch=[bytes(32)],
    version=1,
    prevhash=bytes(32),
    ntime=2,
    nbits=3,
    nonce=4,
    share_target=bytes(32),
    network_target=bytes(32),
    version_bits=0,
    version_mask=0,
)
BAD_BYTES = ["str", 5, None, [1, 2], bytes(31), bytes(33)]
BAD_U32 = [-1, 2**32, 2**64, 1.0, "1", None, True, b"\x01"]
BAD_BRANCH = [
    b"x" * 32,
    "ab",
    5,
    None,
    {bytes(32)},
    [bytes(31)],
    [bytes(32), "x"],
    [None],
    [bytes(32), bytes(33)],
    (memoryview(b"x"),),
]
SHARE_CASES = (
    [(f, v) for f in ("coinb1", "extranonce1", "extranonce2", "coinb2") for v in BAD_BYTES[:4]]
    + [(f, v) for f in ("prevhash", "share_target", "network_target") for v in BAD_BYTES]
    + [
        (f, v)
        for f in ("version", "ntime", "nbits", "nonce", "version_bits", "version_mask")
        for v in BAD_U32
    ]
    + [("branch", v) for v in BAD_BRANCH]
)


@pytest.mark.parametrize(("field", "value"), SHARE_CASES, ids=lambda x: repr(x)[:20])
def test_check_share_errors_match_reference(field: str, value: object) -> None:
    assert c_impl is not None
    args = list({**GOOD_SHARE, field: value}.values())
    expected = outcome(lambda: python_impl.check_share(*args))
    assert isinstance(expected, tuple) and expected[0] in (TypeError, ValueError)
    assert field in expected[1]
    assert outcome(lambda: c_impl.check_share(*args)) == expected
    batch = [list(GOOD_SHARE.values()), args]
    expected_batch = outcome(lambda: python_impl.check_shares(batch))
    assert expected_batch[1].startswith(f"items[1]: {field}")
    assert outcome(lambda: c_impl.check_shares(batch)) == expected_batch


@pytest.mark.parametrize(
    "items",
    [
        b"abc",
        "abc",
        5,
        None,
        {1: 2},
        [b"x", (1,)],
        [tuple(GOOD_SHARE.values())[:13]],
        [(*tuple(GOOD_SHARE.values()), 0)],
        [b"x" * 12],
        [[]],
    ],
    ids=repr,
)
def test_check_shares_container_errors_match_reference(items: object) -> None:
    assert c_impl is not None
    expected = outcome(lambda: python_impl.check_shares(items))
    assert isinstance(expected, tuple)
    assert outcome(lambda: c_impl.check_shares(items)) == expected


@pytest.mark.parametrize(
    "call",
    [
        ("sha256d", ("str",)),
        ("sha256d", (None,)),
        ("sha256d", (5,)),
        ("sha256d_many", (b"ab",)),
        ("sha256d_many", ("ab",)),
        ("sha256d_many", (5,)),
        ("sha256d_many", ([b"a", "b"],)),
        ("sha256d_many", ([b"a", None],)),
        ("merkle_root", ("x", [])),
        ("merkle_root", (b"x", b"y" * 32)),
        ("merkle_root", (b"x", [b"y"])),
        ("header_hash", (-1, bytes(32), bytes(32), 0, 0, 0)),
        ("header_hash", (0, bytes(31), bytes(32), 0, 0, 0)),
        ("header_hash", (0, bytes(32), "root", 0, 0, 0)),
        ("header_hash", (0, bytes(32), bytes(32), 2**32, 0, 0)),
        ("header_hash", (0, bytes(32), bytes(32), 0, False, 0)),
        ("header_hash", (0, bytes(32), bytes(32), 0, 0, 1.5)),
    ],
    ids=repr,
)
def test_other_errors_match_reference(call: tuple[str, tuple]) -> None:
    assert c_impl is not None
    name, args = call
    expected = outcome(lambda: getattr(python_impl, name)(*args))
    assert isinstance(expected, tuple)
    assert outcome(lambda: getattr(c_impl, name)(*args)) == expected


def test_released_memoryview_is_a_clean_error() -> None:
    assert c_impl is not None
    mv = memoryview(b"abc")
    mv.release()
    for impl in (python_impl, c_impl):
        with pytest.raises(ValueError, match="released"):
            impl.sha256d(mv)


class _RaisingSequence(Sequence):  # type: ignore[type-arg]
    """A branch whose every access raises exc: neither a TypeError nor a ValueError."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __len__(self) -> int:
        raise self.exc

    def __getitem__(self, i: object) -> bytes:
        raise self.exc


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyError("k"), ZeroDivisionError("z")])
def test_check_shares_prefixes_only_argument_errors(exc: Exception) -> None:
    """The reference names the item only in TypeError/ValueError (argument errors); any other
    exception from an item (here a branch object's own failure) passes through unchanged."""
    assert c_impl is not None
    item = [*GOOD_SHARE.values()]
    item[4] = _RaisingSequence(exc)
    for impl in (python_impl, c_impl):
        with pytest.raises(type(exc)) as info:
            impl.check_shares([item])
        assert str(info.value) == str(exc), impl.__name__
