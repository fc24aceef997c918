"""Bad input never crashes the server or reaches the client as a traceback (hypothesis)."""

from __future__ import annotations

import asyncio
import json
import os

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratum import protocol
from stratum.tip import TipBook
from stratum.validate import Reject, Submission, precheck
from tests.stratum_client import StratumClient
from tests.stratum_support import FIXTURE_NOW, fixture_job, start_server

# QAZPOOL_FUZZ_EXAMPLES raises the example count of the parser/validator fuzzers for a long run
# (BENCHMARKS.md "Security suite"); the default run keeps it small.
FUZZ_EXAMPLES = int(os.environ.get("QAZPOOL_FUZZ_EXAMPLES", "200"))
JOB = fixture_job()
BOOK = TipBook()
BOOK.add(JOB)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.binary(max_size=200))
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
def test_decode_request_raises_only_protocol_errors(raw):
    try:
        protocol.decode_request(raw)
    except protocol.ProtocolError as exc:
        assert str(exc)


@given(json_values)
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
def test_precheck_never_raises(params):
    result = precheck(
        params,
        subscribed=True,
        workers={"a.w": ("a", "w")},
        session_jobs={JOB.job_id: 1.0},
        book=BOOK,
        extranonce2_size=8,
        version_mask=0x1FFFE000,
        now=FIXTURE_NOW,
    )
    assert isinstance(result, Reject | Submission)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "mining.subscribe",
                    "mining.authorize",
                    "mining.configure",
                    "mining.submit",
                    "mining.suggest_difficulty",
                    "mining.suggest_target",
                    "mining.extranonce.subscribe",
                    "mining.ping",
                    "x.unknown",
                ]
            ),
            json_values,
        ),
        min_size=1,
        max_size=8,
    )
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_random_requests_over_tcp_get_wellformed_replies(requests):
    async def main():
        server, port, _, _ = await start_server()
        c = await StratumClient.connect("127.0.0.1", port)
        try:
            futs = []
            lines = []
            for i, (method, params) in enumerate(requests):
                msg, fut = c.request_future(method, params, req_id=1000 + i)
                lines.append(json.dumps(msg).encode() + b"\n")
                futs.append(fut)
            c.send_lines(*lines)
            replies = await asyncio.wait_for(asyncio.gather(*futs), 10)
            for i, r in enumerate(replies):
                assert set(r) >= {"id", "result", "error"} and r["id"] == 1000 + i
                err = r["error"]
                if err is not None:
                    assert isinstance(err, list) and 20 <= err[0] <= 25
                    assert "Traceback" not in err[1] and "Internal error" not in err[1]
            assert (await c.request("mining.ping", []))["result"] == "pong"
        finally:
            await c.close()
            await server.shutdown()

    asyncio.run(main())


def test_reject_lines_are_single_json_lines():
    for r in Reject:
        line = protocol.error_reply_cached(1, protocol.error_tail(r.code, r.message))
        assert line.count(b"\n") == 1 and orjson.loads(line)["error"][0] == r.code


# ---- issue 14: the security suite's fuzzers (line parser, share validator) ----
LIMIT = 64


@given(
    st.lists(st.binary(max_size=90).map(lambda b: b.replace(b"\n", b"")), max_size=12),
    st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=20),
)
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
def test_line_buffer_any_chunking_gives_the_lines_or_refuses_an_overlong_one(lines, cuts):
    """Whatever the TCP segmentation, the line parser yields exactly the stream's non-blank lines,
    or raises LineTooLong once a line passes the limit; it never buffers more than the limit."""
    stream = b"".join(line + b"\n" for line in lines)
    buf = protocol.LineBuffer(LIMIT)
    got: list[bytes] = []
    pos = 0
    i = 0
    too_long = False
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        i += 1
        try:
            got.extend(buf.feed(stream[pos : pos + step]))
        except protocol.LineTooLong:
            too_long = True
            break
        assert buf.pending <= LIMIT
        pos += step
    expected = [ln.strip() for ln in lines if ln.strip()]
    if any(len(ln) > LIMIT for ln in lines):
        assert too_long
        first_bad = next(k for k, ln in enumerate(lines) if len(ln) > LIMIT)
        assert got == [ln.strip() for ln in lines[:first_bad] if ln.strip()]
    else:
        assert not too_long and got == expected


def _hexvariant(draw: st.DrawFn, value: str) -> str:
    """The same number as the miner may write it: case flips, extra/missing leading zeros."""
    value = "".join(c.upper() if draw(st.booleans()) else c for c in value)
    pad = draw(st.integers(min_value=-2, max_value=2))
    if pad > 0:
        return "0" * pad + value
    stripped = value.lstrip("0") or "0"
    return value if pad == 0 else stripped


@st.composite
def submit_variants(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """A canonical submit of the fixture job and a variant of it a miner controls."""
    en2 = draw(st.binary(min_size=8, max_size=8)).hex()
    ntime = f"{JOB.ntime + draw(st.integers(min_value=0, max_value=600)):08x}"
    nonce = f"{draw(st.integers(min_value=0, max_value=2**32 - 1)):08x}"
    vb = f"{draw(st.integers(min_value=0, max_value=2**32 - 1)) & 0x1FFFE000:08x}"
    canonical = ["a.w", JOB.job_id, en2, ntime, nonce, vb]
    variant = [draw(st.sampled_from(["a.w", "a.w2", "b.w"])), draw(
        st.sampled_from([JOB.job_id, JOB.job_id.upper(), "0" + JOB.job_id]))]
    variant += [_hexvariant(draw, f) for f in (en2, ntime, nonce, vb)]
    if draw(st.booleans()):
        variant[5] = f"{int(vb, 16) | draw(st.integers(0, 2**32 - 1)):08x}"
    return canonical, variant


def _check(params: list[str]) -> Reject | Submission:
    return precheck(params, subscribed=True, workers={"a.w": ("a", "w"), "a.w2": ("a", "w2")},
                    session_jobs={JOB.job_id: 1.0}, book=BOOK, extranonce2_size=8,
                    version_mask=0x1FFFE000, now=FIXTURE_NOW)  # fmt: skip


@given(submit_variants())
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
def test_share_validator_a_variant_is_refused_or_hashes_to_the_same_header(pair):
    """Credit fraud: any rewriting of an accepted share a miner controls (hex case, padding,
    worker, job id, version bits) is refused before the duplicate check, or builds exactly the
    same 80-byte header, whose hash the duplicate set then catches."""
    from stratum.server import build_header

    canonical, variant = pair
    base = _check(canonical)
    assert isinstance(base, Submission) and base.reject is None
    other = _check(variant)
    if isinstance(other, Reject) or other.reject is not None:
        return
    en1 = bytes.fromhex("01020304")
    mine, theirs = build_header(base, en1), build_header(other, en1)
    # extranonce2, ntime and nonce are the same numbers: only a different rolled version (other
    # work, a different hash) may change the header; otherwise the duplicate set catches it
    assert theirs[4:] == mine[4:]
    if theirs[:4] != mine[:4]:
        assert int(variant[5], 16) & 0x1FFFE000 != int(canonical[5], 16) & 0x1FFFE000 or (
            int(variant[5], 16) & ~0x1FFFE000 & 0xFFFFFFFF)
