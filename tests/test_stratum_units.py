"""Pure parts of the Stratum server: difficulty math, framing/JSON-RPC, validation order,
extranonce allocation, vardiff (with hypothesis properties)."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratum import protocol, vardiff
from stratum.difficulty import DIFF1, target_from_difficulty, target_from_nbits
from stratum.extranonce import ExtranonceAllocator, ExtranonceExhausted
from stratum.tip import TipBook
from stratum.validate import Reject, Submission, judge, precheck
from tests.conftest import stratum_vectors
from tests.stratum_support import FIXTURE_NOW, fixture_job

# ---- difficulty -------------------------------------------------------------------------


def test_difficulty_vectors():
    v = stratum_vectors()["difficulty_and_nbits"]
    assert DIFF1 == int(v["diff1_target_hex"], 16)
    for d, hexv in v["pool_target_for_difficulty"].items():
        assert target_from_difficulty(int(d)) == int(hexv, 16)
    for nbits, hexv in v["nbits_examples"].items():
        assert target_from_nbits(int(nbits, 16)) == int(hexv, 16)


def test_fractional_difficulty_is_exact():
    assert target_from_difficulty(0.001) == DIFF1 * 1000
    assert target_from_difficulty(Fraction(1, 3)) == DIFF1 * 3
    assert target_from_difficulty(3) == DIFF1 // 3
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            target_from_difficulty(bad)
    with pytest.raises(ValueError):
        target_from_nbits(0x04923456)  # sign bit


# ---- framing / JSON-RPC -------------------------------------------------------------------


def test_line_buffer_tolerates_crlf_blank_lines_and_split_reads():
    buf = protocol.LineBuffer(64)
    assert buf.feed(b'{"a":1}\r\n\r\n\n{"b"') == [b'{"a":1}']
    assert buf.feed(b":2}\n") == [b'{"b":2}']
    assert buf.feed(b"") == []


def test_line_buffer_limit_on_partial_and_complete_lines():
    with pytest.raises(protocol.LineTooLong):
        protocol.LineBuffer(16).feed(b"x" * 17)
    with pytest.raises(protocol.LineTooLong):
        protocol.LineBuffer(16).feed(b"x" * 17 + b"\n")
    assert protocol.LineBuffer(16).feed(b"x" * 16 + b"\n") == [b"x" * 16]


def test_decode_request_errors_name_the_field():
    with pytest.raises(protocol.ProtocolError, match="invalid JSON") as e:
        protocol.decode_request(b"{nope")
    assert e.value.fatal
    with pytest.raises(protocol.ProtocolError, match="method"):
        protocol.decode_request(b'{"id":1,"params":[]}')
    with pytest.raises(protocol.ProtocolError, match="id"):
        protocol.decode_request(b'{"id":[1],"method":"x"}')
    r = protocol.decode_request(b'{"id":"a","method":"mining.subscribe","params":null}')
    assert (r.id, r.method, r.params) == ("a", "mining.subscribe", [])


@pytest.mark.parametrize("req_id", [1, "abc", None, 2**40])
def test_replies_echo_id_type_and_carry_all_keys(req_id):
    for line in (protocol.true_reply(req_id), protocol.reply(req_id, True)):
        assert orjson.loads(line) == {"id": req_id, "result": True, "error": None}
        assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(protocol.error_reply(req_id, 21, "Job not found")) == {
        "id": req_id,
        "result": None,
        "error": [21, "Job not found", None],
    }


def test_set_difficulty_sends_integers_when_integral():
    assert orjson.loads(protocol.set_difficulty(1024.0))["params"] == [1024]
    assert orjson.loads(protocol.set_difficulty(0.001))["params"] == [0.001]


# ---- validation ---------------------------------------------------------------------------

JOB = fixture_job()
BOOK = TipBook()
BOOK.add(JOB)
NEW_BLOCK_BOOK = TipBook()  # JOB, then a job on another prevhash (a new block)
NEW_BLOCK_BOOK.add(JOB)
NEW_BLOCK_BOOK.add(dataclasses.replace(JOB, job_id="new", prevhash=b"\x00" * 32))
EN2 = "00" * 8


def _check(params, **kw):
    args = dict(
        subscribed=True,
        workers={"a.w": ("a", "w")},
        session_jobs={JOB.job_id: 1.0},
        book=BOOK,
        extranonce2_size=8,
        version_mask=0x1FFFE000,
        now=FIXTURE_NOW,
    )
    args.update(kw)
    return precheck(params, **args)


def _p(**kw):
    d = {
        "worker": "a.w",
        "job": JOB.job_id,
        "en2": EN2,
        "ntime": f"{JOB.ntime:08x}",
        "nonce": "00000000",
    }
    d.update(kw)
    return [d["worker"], d["job"], d["en2"], d["ntime"], d["nonce"]]


def test_precheck_accepts_a_well_formed_submit():
    sub = _check([*_p(), "00002000"])
    assert isinstance(sub, Submission)
    assert (sub.ntime, sub.nonce, sub.version_bits, sub.difficulty) == (JOB.ntime, 0, 0x2000, 1.0)


@pytest.mark.parametrize(
    ("params", "kw", "reason"),
    [
        (["a.w", "1", EN2, "00000000"], {}, Reject.MALFORMED),
        ("not a list", {}, Reject.MALFORMED),
        ([*_p()[:4], 5], {}, Reject.MALFORMED),
        (_p(), {"subscribed": False}, Reject.NOT_SUBSCRIBED),
        (_p(), {"workers": {}}, Reject.UNAUTHORIZED),
        (_p(job="ff"), {}, Reject.JOB_NOT_FOUND),
        (_p(en2="zz" * 8), {}, Reject.BAD_EXTRANONCE2),
        (_p(en2="000"), {}, Reject.BAD_EXTRANONCE2),
        (_p(ntime="0x123456"), {}, Reject.BAD_NTIME),
        (_p(ntime="123456789"), {}, Reject.BAD_NTIME),
        (_p(nonce=" 1234567"), {}, Reject.BAD_NONCE),
        ([*_p(), "0000200z"], {}, Reject.BAD_VERSION_BITS),
    ],
)
def test_precheck_rejects_before_hashing(params, kw, reason):
    assert _check(params, **kw) is reason


@pytest.mark.parametrize(
    ("params", "kw", "reason"),
    [
        (_p(worker="a.other"), {}, Reject.UNAUTHORIZED),
        (_p(), {"book": NEW_BLOCK_BOOK}, Reject.STALE),
        (_p(en2="00" * 4), {}, Reject.BAD_EXTRANONCE2),
        (_p(en2=""), {}, Reject.BAD_EXTRANONCE2),
        (_p(ntime="123456"), {}, Reject.BAD_NTIME),
        (_p(nonce="1"), {}, Reject.BAD_NONCE),
        ([*_p(), "2000"], {}, Reject.BAD_VERSION_BITS),
        (_p(ntime=f"{JOB.ntime - 1:08x}"), {}, Reject.NTIME_OUT_OF_RANGE),
        (_p(ntime=f"{JOB.ntime + 7001:08x}"), {"now": JOB.ntime + 7200}, Reject.NTIME_OUT_OF_RANGE),
        (_p(ntime=f"{FIXTURE_NOW + 7201:08x}"), {}, Reject.NTIME_OUT_OF_RANGE),
        ([*_p(), "40000000"], {}, Reject.VERSION_MASK),
        ([*_p(), "00002000"], {"version_mask": 0}, Reject.VERSION_MASK),
    ],
)
def test_precheck_hashes_first_and_rejects_after(params, kw, reason):
    """Spec §10.3: these are hashed (a block among them is found) and refused afterwards."""
    sub = _check(params, **kw)
    assert isinstance(sub, Submission) and sub.reject is reason


def test_precheck_ntime_below_gbt_mintime_is_out_of_range():
    job = dataclasses.replace(
        JOB, job_id="mt", template=dataclasses.replace(JOB.template, mintime=JOB.ntime + 10)
    )
    book = TipBook()
    book.add(job)
    sub = _check(_p(job="mt"), book=book, session_jobs={"mt": 1.0})
    assert isinstance(sub, Submission) and sub.reject is Reject.NTIME_OUT_OF_RANGE


def test_precheck_job_outside_the_session_window_uses_current_difficulty():
    sub = _check(_p(), session_jobs={}, difficulty=4.0)
    assert isinstance(sub, Submission) and sub.reject is None and sub.difficulty == 4.0


def test_precheck_version_bits_outside_the_mask_are_hashed_as_sent():
    sub = _check([*_p(), "40002000"])
    assert isinstance(sub, Submission) and sub.reject is Reject.VERSION_MASK
    assert sub.hash_mask == 0x1FFFE000 | 0x40000000


def test_precheck_order_shape_before_auth_before_job():
    # several faults at once: the first in the documented order wins
    assert _check(["x", "ff", "zz", "0", "0"], subscribed=False) is Reject.NOT_SUBSCRIBED
    assert _check(_p(job="ff", en2="z"), workers={}) is Reject.UNAUTHORIZED
    assert _check(_p(job="ff", en2="z")) is Reject.JOB_NOT_FOUND
    sub = _check(_p(worker="b", en2="00"), book=NEW_BLOCK_BOOK)
    assert isinstance(sub, Submission) and sub.reject is Reject.UNAUTHORIZED
    sub = _check(_p(en2="00", ntime="00000000"), book=NEW_BLOCK_BOOK)
    assert isinstance(sub, Submission) and sub.reject is Reject.STALE
    sub = _check(_p(en2="00", ntime="00000000"))
    assert isinstance(sub, Submission) and sub.reject is Reject.BAD_EXTRANONCE2


def test_full_version_submit_is_tolerated():
    sub = _check([*_p(), f"{JOB.version | 0x2000:08x}"])
    assert isinstance(sub, Submission)


def test_reject_codes_and_labels_are_unique_and_in_range():
    labels = [r.label for r in Reject]
    assert len(set(labels)) == len(labels)
    assert all(20 <= r.code <= 25 for r in Reject)


@given(st.booleans(), st.booleans(), st.booleans(), st.sampled_from([None, *Reject]))
def test_judge_block_check_comes_first(meets_share, meets_network, dup, reject):
    reason, is_block = judge(meets_share, meets_network, dup, reject)
    assert is_block == (meets_network and not dup)  # whatever the reject
    if reject is not None:
        assert reason is reject
    elif dup:
        assert reason is Reject.DUPLICATE
    elif meets_network:
        assert reason is None
    elif not meets_share:
        assert reason is Reject.LOW_DIFFICULTY
    else:
        assert reason is None


# ---- extranonce -----------------------------------------------------------------------------


def test_extranonce_layout_unique_and_resume_window():
    now = [0.0]
    a = ExtranonceAllocator(
        size=4,
        node_id=0xAB,
        process_bits=2,
        process_index=3,
        resume_window_s=10,
        clock=lambda: now[0],
    )
    e1, e2 = a.allocate(), a.allocate()
    assert e1 != e2 and e1[0] == 0xAB and e1[1] >> 6 == 3
    a.release(e1)
    assert a.allocate() not in (e1, e2)  # reserved for its owner during the window
    assert a.allocate(resume=e1) == e1  # the owner resumes
    assert a.allocate(resume=e1) != e1  # in use: a new one
    assert a.allocate(resume=b"\x00\x00\x00\x01") != b"\x00\x00\x00\x01"  # not our prefix
    a.release(e2)
    now[0] = 11
    a._purge()
    assert e2 not in a._reserved


def test_extranonce_never_reuses_in_use_values_across_wrap():
    a = ExtranonceAllocator(size=2, node_id=1, node_bits=8)
    got = {a.allocate() for _ in range(256)}
    assert len(got) == 256
    with pytest.raises(ExtranonceExhausted):
        a.allocate()


def test_two_nodes_never_collide():
    a = ExtranonceAllocator(node_id=1)
    b = ExtranonceAllocator(node_id=2)
    assert not {a.allocate() for _ in range(1000)} & {b.allocate() for _ in range(1000)}


# ---- vardiff --------------------------------------------------------------------------------

CFG = vardiff.VardiffConfig(target_interval_s=10, retarget_interval_s=60, decay_window_s=300)


def _simulate(hash_rate_d1: float, difficulty: float, seconds: int, cfg=CFG):
    """Deterministic miner: one share every difficulty / rate seconds."""
    st_ = vardiff.new_state(0.0)
    t = 0.0
    interval = difficulty / hash_rate_d1
    while t + interval <= seconds:
        t += interval
        st_ = vardiff.observe(st_, t, difficulty, cfg)
    return st_


def test_vardiff_converges_to_target_interval():
    rate = 500.0  # difficulty-1 shares per second
    diff = 1.0
    t = 0.0
    state = vardiff.new_state(0.0)
    for _ in range(2000):
        t += diff / rate
        state = vardiff.observe(state, t, diff, CFG)
        if vardiff.due(state, t, CFG):
            new = vardiff.next_difficulty(state, t, diff, CFG, 1.0, 1e12)
            state = vardiff.retargeted(state, t)
            if new is not None:
                diff = new
    assert 5000 * 0.7 <= diff <= 5000 * 1.3


def test_vardiff_idle_miner_is_lowered_by_the_sweep():
    state = _simulate(100.0, 1000.0, 120)
    state = vardiff.retargeted(state, 120)
    # the miner goes quiet: later sweeps lower the difficulty step by step (max_step)
    new = vardiff.next_difficulty(state, 1000, 1000.0, CFG, 1.0, 1e12)
    assert new == 250.0


def test_vardiff_respects_floor_and_fractional_minimum():
    state = _simulate(0.000002, 0.0001, 600)  # one share per 50 s: too slow
    new = vardiff.next_difficulty(state, 600, 0.0001, CFG, 0.00005, 1e12)
    assert new == 0.00005  # fractional floor reached, not rounded to 0 or 1
    assert vardiff.next_difficulty(state, 600, 0.0001, CFG, 0.0001, 1e12) is None


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(1e-3, 1e7),
    current=st.floats(1e-3, 1e9),
    floor=st.floats(1e-4, 10),
    span=st.floats(1, 1e9),
    now=st.floats(60, 5000),
    shares=st.integers(0, 100),
)
def test_vardiff_properties(rate, current, floor, span, now, shares):
    ceiling = floor + span
    current = min(max(current, floor), ceiling)
    state = vardiff.VardiffState(rate * 300, 0.0, now, 0.0, shares)
    new = vardiff.next_difficulty(state, now, current, CFG, floor, ceiling)
    if new is None:
        return
    assert floor <= new <= ceiling  # bounds
    assert new != current
    tol = 0.5 if new >= 1 else new * 1e-3  # integers from 1 up, 4 digits below
    assert new >= current / CFG.max_step - tol or new == floor  # step limit down
    if shares < CFG.retarget_shares:  # few shares: the up step is limited
        assert new <= current * CFG.max_step_up + tol or new == ceiling
    ideal = vardiff.rate(state, now, CFG) * CFG.target_interval_s
    # direction follows the measured rate
    assert (new > current) == (ideal > current) or new in (floor, ceiling)


def test_vardiff_not_due_before_interval_or_enough_shares():
    state = vardiff.new_state(0.0)
    assert vardiff.next_difficulty(state, 30, 1.0, CFG, 1, 1e12) is None
    for i in range(CFG.retarget_shares):
        state = vardiff.observe(state, 0.01 * i, 1000.0, CFG)
    assert not vardiff.due(state, 0.2, CFG)  # a minimum gap between retargets
    assert vardiff.due(state, vardiff.MIN_RETARGET_GAP_S, CFG)


def test_vardiff_asic_at_difficulty_one_converges_in_one_step():
    rate = 23_000.0  # ~100 TH/s in difficulty-1 shares per second
    state = vardiff.new_state(0.0)
    t = 0.0
    while not vardiff.due(state, t, CFG):
        t += 1 / rate
        state = vardiff.observe(state, t, 1.0, CFG)
    new = vardiff.next_difficulty(state, t, 1.0, CFG, 1.0, 1e12)
    assert t < 0.3 and new is not None
    assert 0.8 * rate * 10 <= new <= 1.2 * rate * 10  # straight to ~230k, not 64
