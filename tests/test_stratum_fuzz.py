"""Bad input never crashes the server or reaches the client as a traceback (hypothesis)."""

from __future__ import annotations

import asyncio
import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratum import protocol
from stratum.tip import TipBook
from stratum.validate import Reject, Submission, precheck
from tests.stratum_client import StratumClient
from tests.stratum_support import FIXTURE_NOW, fixture_job, start_server

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
def test_decode_request_raises_only_protocol_errors(raw):
    try:
        protocol.decode_request(raw)
    except protocol.ProtocolError as exc:
        assert str(exc)


@given(json_values)
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
