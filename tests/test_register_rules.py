"""Pure register rules: IIN/BIN check digit, names, licenses, suspensions, credited periods,
dated histories, hardware comparison, CSV rows and the audit hash chain."""

from __future__ import annotations

import itertools
import random
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolserver.register import iin
from poolserver.register.chain import GENESIS, AuditEntry, make_entry, parse_anchor, verify_chain
from poolserver.register.csvrows import HARDWARE_SCHEMA, LICENSE_SCHEMA, miner_schema, parse_csv
from poolserver.register.errors import Conflict, RegisterError
from poolserver.register.hardware import (
    Finding,
    Machine,
    Observation,
    capacity_check,
    compare_machines,
    format_hashrate,
    parse_hashrate,
)
from poolserver.register.history import Dated, parse_fee_percent, value_at
from poolserver.register.licensing import (
    License,
    LicenseState,
    Subtype,
    Suspension,
    check_new_suspension,
    credited_intervals,
    expiry_warning,
    is_credited,
    new_license,
    new_suspension,
    refusal_message,
    status_at,
)
from poolserver.register.names import split_username, validate_account, validate_worker
from poolserver.register.rules import validate_address, validate_iin_bin
from poolserver.register.timeutil import KZ, add_months, kz_midnight, parse_time, show
from tests.conftest import load_fixture


def make_valid(first11: str) -> str | None:
    check = iin.check_digit(first11)
    return None if check is None else first11 + str(check)


def constructed_numbers(n: int, seed: int = 7) -> list[str]:
    """``n`` valid numbers, about half needing the second weight pass (first sum == 10)."""
    rng = random.Random(seed)
    out: list[str] = []
    want_second = True
    while len(out) < n:
        body = "".join(rng.choice("0123456789") for _ in range(11))
        number = make_valid(body)
        if number is None or (iin.first_sum(number) == 10) != want_second:
            continue
        out.append(number)
        want_second = not want_second
    return out


# ---- IIN / BIN ----------------------------------------------------------------------------


def test_check_digit_by_hand():
    # 1*1+2*2+...: digits 8,9,0,1,0,1,3,0,0,1,2 -> weights 1..11
    body = "89010130012"
    s1 = sum(int(d) * w for d, w in zip(body, range(1, 12), strict=True)) % 11
    assert s1 != 10
    assert validate_iin_bin(body + str(s1)) == body + str(s1)
    # a body whose first sum is 10 uses the second weights
    body2 = next(
        b
        for b in (f"{i:011d}" for i in range(1000, 100000))
        if iin.first_sum(b + "0") == 10 and iin.check_digit(b) is not None
    )
    s2 = sum(int(d) * w for d, w in zip(body2, iin.WEIGHTS_2, strict=True)) % 11
    assert iin.check_digit(body2) == s2
    assert validate_iin_bin(body2 + str(s2))


def test_numbers_never_issued_are_refused():
    body = next(f"{i:011d}" for i in range(10**6) if iin.check_digit(f"{i:011d}") is None)
    for last in "0123456789":
        with pytest.raises(RegisterError, match="no check digit") as e:
            validate_iin_bin(body + last)
        assert e.value.field == "iin_bin"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("12345", "12 digits"),
        ("1234567890123", "12 digits"),
        ("12345678901a", "only the digits"),
        ("１２３４５６７８９０１２", "only the digits"),
    ],
)
def test_malformed_numbers_name_the_field(value, reason):
    with pytest.raises(RegisterError, match=reason) as e:
        validate_iin_bin(value, "miner.iin_bin")
    assert e.value.field == "miner.iin_bin"


def test_every_single_digit_corruption_exhaustively():
    """All 12*9 single-digit corruptions of 400 constructed numbers. Proven: every corruption is
    caught except (a) a change of the 11th digit when the first sum is not 10 (weight 11 = 0 mod
    11: never caught) and (b) changes that move the first sum onto or off 10, where the other
    weight pass decides (caught unless it happens to equal the check digit)."""
    blind_11th = crossings = crossings_missed = 0
    for number in constructed_numbers(400):
        s1 = iin.first_sum(number)
        for pos in range(12):
            for d in "0123456789":
                if d == number[pos]:
                    continue
                bad = number[:pos] + d + number[pos + 1 :]
                try:
                    validate_iin_bin(bad)
                    caught = False
                except RegisterError:
                    caught = True
                s1_bad = iin.first_sum(bad)
                if pos == 11:
                    assert caught, bad  # the check digit itself
                elif pos == 10 and s1 != 10:
                    assert not caught, bad  # documented blind spot (a)
                    blind_11th += 1
                elif (s1 == 10) != (s1_bad == 10):
                    crossings += 1  # case (b)
                    crossings_missed += not caught
                else:
                    assert caught, (number, bad)
    assert blind_11th == 200 * 9  # every number with first sum != 10
    assert 0 < crossings_missed < crossings  # (b) is sometimes caught, sometimes not


@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_constructed_numbers_validate_and_every_wrong_check_digit_is_refused(body):
    number = make_valid(body)
    if number is None:
        return
    assert validate_iin_bin(f"  {number} ") == number
    for d in "0123456789":
        if d != number[11]:
            with pytest.raises(RegisterError):
                validate_iin_bin(number[:11] + d)


def test_kind_from_fifth_digit():
    assert iin.kind_of("990340000000") is iin.IdKind.BIN
    assert iin.kind_of("880101300000") is iin.IdKind.IIN


# ---- names ---------------------------------------------------------------------------------


def test_usernames_split_and_validate():
    assert split_username("acme.rig-01") == ("acme", "rig-01")
    assert split_username("acme") == ("acme", "")
    assert split_username("acme.rack1.s19") == ("acme", "rack1.s19")


@pytest.mark.parametrize(
    ("func", "value", "reason"),
    [
        (validate_account, "", "must not be empty"),
        (validate_account, "a" * 65, "65 characters, at most 64"),
        (validate_account, "ac'me", "U+0027 at position 3"),
        (validate_account, "ac.me", "U+002E at position 3"),
        (validate_worker, "rig\n01", "U+000A at position 4"),
        (validate_worker, "w" * 65, "at most 64"),
        (validate_worker, "rig;DROP", "U+003B"),
        (validate_worker, "рига", "U+0440 at position 1"),
    ],
)
def test_bad_names_are_refused_without_echoing_them(func, value, reason):
    with pytest.raises(RegisterError, match=re.escape(reason)) as e:
        func(value)
    assert value not in str(e.value) or not value


@given(st.text(max_size=80))
def test_accepted_worker_names_are_safe_for_logs_and_queries(name):
    try:
        validate_worker(name)
    except RegisterError:
        return
    assert len(name) <= 64 and all(c.isascii() and (c.isalnum() or c in "_.-") for c in name)


# ---- licenses ------------------------------------------------------------------------------

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_license_expiry_defaults_to_three_years():
    lic = new_license("KZ-MIN-0001", date(2024, 2, 29), "ii")
    assert lic.subtype is Subtype.II
    assert lic.expires_on == date(2027, 2, 28)
    assert new_license("X", date(2024, 3, 1), "I", date(2025, 3, 1)).expires_on == date(2025, 3, 1)
    with pytest.raises(RegisterError, match=r"license.subtype"):
        new_license("X", date(2024, 3, 1), "III")
    with pytest.raises(RegisterError, match=r"license.expires_on"):
        new_license("X", date(2024, 3, 1), "I", date(2024, 3, 1))
    with pytest.raises(RegisterError, match=r"license.number: must not be empty"):
        new_license("  ", date(2024, 3, 1), "I")


def test_license_boundaries_are_kazakhstan_midnight():
    lic = new_license("L", date(2025, 1, 10), "I")
    start = datetime(2025, 1, 9, 19, 0, tzinfo=UTC)  # 2025-01-10 00:00 UTC+5
    assert lic.state_at(start - timedelta(microseconds=1)) is LicenseState.NONE
    assert lic.state_at(start) is LicenseState.ACTIVE
    end = kz_midnight(date(2028, 1, 10))
    assert lic.state_at(end - timedelta(microseconds=1)) is LicenseState.ACTIVE
    assert lic.state_at(end) is LicenseState.EXPIRED


@pytest.mark.parametrize("months", [1, 2, 3, 4, 5, 6])
def test_suspension_of_1_to_6_months(months):
    s = new_suspension(T0, "unplanned inspection", months=months)
    assert s.ends_at.astimezone(KZ).date() == add_months(T0.astimezone(KZ).date(), months)


@pytest.mark.parametrize("months", [0, 7, 12, -1])
def test_suspension_lengths_outside_the_law_are_refused(months):
    with pytest.raises(RegisterError, match="1 to 6 months") as e:
        new_suspension(T0, "x", months=months)
    assert e.value.field == "suspension.months"


@pytest.mark.parametrize(
    "ends", [T0 + timedelta(days=20), T0 + timedelta(days=200), T0 - timedelta(days=1)]
)
def test_suspension_end_outside_the_law_is_refused(ends):
    with pytest.raises(RegisterError, match="allows 1 to 6 months") as e:
        new_suspension(T0, "x", ends_at=ends)
    assert e.value.field == "suspension.ends_at"


def test_suspension_needs_reason_and_aware_time():
    with pytest.raises(RegisterError, match=r"suspension.reason"):
        new_suspension(T0, " ", months=1)
    with pytest.raises(RegisterError, match="without a time zone"):
        new_suspension(datetime(2025, 1, 1), "x", months=1)


def test_overlapping_or_late_suspensions_conflict():
    lic = new_license("L", date(2024, 1, 1), "I")
    s1 = new_suspension(T0, "a", months=2)
    lic2 = License(**{**_fields(lic), "suspensions": (s1,)})
    with pytest.raises(Conflict, match="overlaps"):
        check_new_suspension(lic2, new_suspension(T0 + timedelta(days=30), "b", months=1))
    check_new_suspension(lic2, new_suspension(s1.ends_at, "b", months=1))  # adjacent is fine
    with pytest.raises(Conflict, match="expired"):
        check_new_suspension(lic, new_suspension(kz_midnight(lic.expires_on), "c", months=1))
    revoked = License(**{**_fields(lic), "revoked_at": T0})
    with pytest.raises(Conflict, match="revoked"):
        check_new_suspension(revoked, new_suspension(T0 + timedelta(days=1), "c", months=1))


def _fields(lic: License) -> dict:
    return {f: getattr(lic, f) for f in License.__slots__}


def test_status_and_messages_for_each_state():
    lic = new_license("KZ-7", date(2024, 1, 1), "I")
    susp = Suspension(T0, T0 + timedelta(days=60), "inspection found violations")
    lic = License(**{**_fields(lic), "suspensions": (susp,)})
    assert status_at([], T0).state is LicenseState.NONE
    assert "no mining license" in refusal_message(status_at([], T0), "acme")
    st_ = status_at([lic], T0 + timedelta(days=1))
    assert st_.state is LicenseState.SUSPENDED and st_.suspension == susp
    msg = refusal_message(st_, "acme")
    assert "suspended until 2025-03-02 05:00:00 UTC+5" in msg and "inspection" in msg
    assert status_at([lic], T0 + timedelta(days=61)).allowed
    expired = status_at([lic], kz_midnight(date(2027, 1, 1)))
    assert expired.state is LicenseState.EXPIRED
    assert "expired on 2027-01-01" in refusal_message(expired, "acme")
    revoked = License(**{**_fields(lic), "revoked_at": T0 + timedelta(days=100)})
    st_r = status_at([revoked], T0 + timedelta(days=100))
    assert st_r.state is LicenseState.REVOKED and "revoked on" in refusal_message(st_r, "acme")
    # a renewal registered after expiry makes the miner active again
    renewal = new_license("KZ-8", date(2027, 1, 1), "II")
    assert status_at([lic, renewal], kz_midnight(date(2027, 1, 2))).license == renewal


def test_lifted_suspension_ends_early():
    s = Suspension(T0, T0 + timedelta(days=60), "x", lifted_at=T0 + timedelta(days=10))
    assert s.covers(T0 + timedelta(days=9)) and not s.covers(T0 + timedelta(days=10))


aware = st.datetimes(
    min_value=datetime(2023, 1, 1), max_value=datetime(2031, 1, 1), timezones=st.just(UTC)
)


@st.composite
def licenses(draw: st.DrawFn) -> list[License]:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        issued = draw(st.dates(date(2023, 1, 1), date(2028, 1, 1)))
        lic = new_license(draw(st.text("ABC123", min_size=1, max_size=5)), issued, "I")
        susps = []
        for _ in range(draw(st.integers(0, 3))):
            start = draw(aware)
            s = new_suspension(start, "r", months=draw(st.integers(1, 6)))
            if draw(st.booleans()):
                s = Suspension(s.starts_at, s.ends_at, s.reason, draw(aware))
            susps.append(s)
        revoked = draw(st.none() | aware)
        out.append(
            License(lic.number, lic.issued_on, lic.subtype, lic.expires_on, tuple(susps), revoked)
        )
    return out


@settings(max_examples=300)
@given(licenses(), st.lists(aware, min_size=1, max_size=20))
def test_credited_exactly_when_active(lics, times):
    """The PPLNS hook: a share at t earns iff the miner's license state at t is ACTIVE."""
    intervals = credited_intervals(lics)
    for a, b in itertools.pairwise(intervals):
        assert a[1] < b[0]  # sorted, disjoint, merged
    probes = list(times)
    for s, e in intervals:  # the edges too
        probes += [s, e, s - timedelta(microseconds=1), e - timedelta(microseconds=1)]
    for t in probes:
        assert is_credited(intervals, t) == (status_at(lics, t).state is LicenseState.ACTIVE), t


def test_expiry_warnings_at_60_30_7_days():
    lic = new_license("L", date(2024, 1, 1), "I")
    end = lic.expires_at
    assert expiry_warning([lic], end - timedelta(days=61)) is None
    assert expiry_warning([lic], end - timedelta(days=60)).threshold == 60
    assert expiry_warning([lic], end - timedelta(days=45)).threshold == 60
    assert expiry_warning([lic], end - timedelta(days=30)).threshold == 30
    w = expiry_warning([lic], end - timedelta(days=3, hours=1))
    assert (w.threshold, w.days_left) == (7, 3)
    assert expiry_warning([lic], end) is None  # expired: refused, not warned
    renewal = new_license("M", lic.expires_on, "I")
    assert expiry_warning([lic, renewal], end - timedelta(days=3)) is None


# ---- time display --------------------------------------------------------------------------


def test_times_shown_in_kazakhstan_time_and_parsed_as_utc():
    assert show(datetime(2025, 3, 1, 5, 0, tzinfo=UTC)) == "2025-03-01 10:00:00 UTC+5"
    assert parse_time("2025-03-01", "f") == datetime(2025, 2, 28, 19, 0, tzinfo=UTC)
    assert parse_time("2025-03-01T10:00:00+05:00", "f") == datetime(2025, 3, 1, 5, tzinfo=UTC)
    with pytest.raises(RegisterError, match="without a time zone"):
        parse_time("2025-03-01T10:00:00", "f")
    with pytest.raises(RegisterError, match=r"^f: not a time"):
        parse_time("yesterday", "f")


# ---- dated history -------------------------------------------------------------------------


def test_value_in_force_at_a_time():
    hist = [
        Dated(T0, "addr-a", 1),
        Dated(T0 + timedelta(days=10), "addr-b", 2),
        Dated(T0 + timedelta(days=10), "addr-c", 3),  # same instant, recorded later: wins
        Dated(T0 + timedelta(days=5), "addr-d", 4),  # back-dated entry
    ]
    assert value_at(hist, T0 - timedelta(seconds=1)) is None
    assert value_at(hist, T0) == "addr-a"
    assert value_at(hist, T0 + timedelta(days=7)) == "addr-d"
    assert value_at(hist, T0 + timedelta(days=10)) == "addr-c"


def test_fee_percent_parses_to_integer_basis_points():
    assert parse_fee_percent("1.5") == 150
    assert parse_fee_percent("2%") == 200
    assert parse_fee_percent("0") == 0
    for bad, reason in [
        ("1.555", "two decimal"),
        ("101", "0 to 100"),
        ("-1", "0 to 100"),
        ("abc", "not a number"),
        ("NaN", "0 to 100"),
    ]:
        with pytest.raises(RegisterError, match=reason):
            parse_fee_percent(bad)


# ---- payout addresses ----------------------------------------------------------------------


def test_payout_addresses_checked_for_the_network():
    for rec in load_fixture("addresses.json"):
        if rec["type"].startswith("invalid"):
            with pytest.raises(RegisterError, match=r"^payout_address: (not a|must)"):
                validate_address(rec["address"], "regtest")
        else:
            assert validate_address(rec["address"], "regtest") == rec["address"]
    with pytest.raises(RegisterError, match="not a main Bitcoin address"):
        validate_address("bcrt1qauhvvr3t2ylgl9f8wwc80lt07hhsnrsxdt9mkg", "main")
    upper = "BCRT1QAUHVVR3T2YLGL9F8WWC80LT07HHSNRSXDT9MKG"
    assert validate_address(upper, "regtest") == upper.lower()


# ---- hardware ------------------------------------------------------------------------------


def machine(
    serial: str, owner: str = "acme", rate: str = "100T", model: str = "S19 Pro"
) -> Machine:
    return Machine(serial, "Bitmain", model, parse_hashrate(rate), 3250, owner, "DC-Ekibastuz")


def test_hashrate_parsing_is_exact():
    assert parse_hashrate("110T") == 110 * 10**12
    assert parse_hashrate("95.5 TH/s") == 95_500_000_000_000
    assert parse_hashrate("500gh/s") == 500 * 10**9
    assert parse_hashrate(12345) == 12345
    assert format_hashrate(95_500_000_000_000) == "95.50 TH/s"
    for bad in ["fast", "0T", "-5T", "1.5", "10 XH/s"]:
        with pytest.raises(RegisterError, match="rated_hashrate"):
            parse_hashrate(bad)


def test_observations_compared_with_the_register():
    reg = {m.serial: m for m in [machine("SN1"), machine("SN2", owner="other")]}
    found = compare_machines(
        "acme",
        reg,
        [
            Observation("SN1", "Antminer S19 Pro"),  # matches
            Observation("SN1", "antminer s19pro"),  # matches after normalising
            Observation("SN1", "Antminer S21"),  # model mismatch
            Observation("SN2", "S19 Pro"),  # another miner's machine
            Observation("SN9", "S19 Pro", where="10.0.0.9"),  # unregistered
            Observation(None, "S19 Pro"),  # cannot be identified
        ],
    )
    assert [(d.finding, d.serial) for d in found] == [
        (Finding.MODEL_MISMATCH, "SN1"),
        (Finding.OTHER_OWNER, "SN2"),
        (Finding.UNREGISTERED, "SN9"),
        (Finding.UNREGISTERED, None),
    ]
    assert "10.0.0.9" in found[2].detail


def test_over_capacity_is_strictly_above_110_percent():
    ms = [machine("A", rate="100T"), machine("B", rate="100T"), machine("C", owner="x")]
    assert capacity_check("acme", ms, 220 * 10**12) is None  # exactly 110 %
    d = capacity_check("acme", ms, 220 * 10**12 + 1)
    assert d is not None and d.finding is Finding.OVER_CAPACITY and "200.00 TH/s" in d.detail
    assert capacity_check("nobody", ms, 1) is not None  # no registered machines at all


# ---- CSV -----------------------------------------------------------------------------------

GOOD_BIN = constructed_numbers(1)[0]


def test_csv_rows_with_per_row_errors():
    bad_bin = GOOD_BIN[:11] + str((int(GOOD_BIN[11]) + 1) % 10)
    data = (
        "account,legal_name,iin_bin,contact,payout_address,fee_percent\n"
        f"acme,ACME LLP,{GOOD_BIN},ops@acme.kz,bcrt1qauhvvr3t2ylgl9f8wwc80lt07hhsnrsxdt9mkg,1.5\n"
        f"bad acct,Bad,{bad_bin},,nonsense,\n"
        "\n"
        f"acme,Dup,{GOOD_BIN},,,\n"
        f"beta,Beta IE,{GOOD_BIN},,,\n"
        "short,row\n"
    )
    parsed = parse_csv(data, miner_schema("regtest"))
    assert [(n, r.account, r.fee_bps) for n, r in parsed.rows] == [
        (2, "acme", 150),
        (6, "beta", None),
    ]
    assert [(e.row, e.field) for e in parsed.errors] == [
        (3, "account"),
        (3, "iin_bin"),
        (3, "payout_address"),
        (5, "account"),
        (7, "row"),
    ]
    assert "duplicate of row 2" in str(parsed.errors[3])


def test_csv_header_problems_are_row_1():
    parsed = parse_csv("serial,colour\nX,red\n", HARDWARE_SCHEMA)
    assert parsed.rows == []
    assert {(e.row, e.field) for e in parsed.errors} >= {(1, "colour"), (1, "model")}
    assert parse_csv("", LICENSE_SCHEMA).errors[0].reason == "the file is empty"


def test_license_and_hardware_rows():
    lic = parse_csv(
        "account,number,issued_on,subtype,expires_on\nacme,KZ-1,2024-05-01,II,\n"
        "acme,KZ-2,01.05.2024,III,\n",
        LICENSE_SCHEMA,
    )
    assert lic.rows[0][1].subtype is Subtype.II and lic.rows[0][1].expires_on is None
    assert [(e.row, e.field) for e in lic.errors] == [(3, "issued_on"), (3, "subtype")]
    hw = parse_csv(
        "serial,manufacturer,model,rated_hashrate,power_w,account,data_centre\n"
        "SN-1,Bitmain,S21,200T,3500,acme,DC1\nSN 2,Bitmain,S21,lots,0,acme,DC1\n",
        HARDWARE_SCHEMA,
    )
    assert hw.rows[0][1].rated_hashrate == 200 * 10**12
    assert [(e.row, e.field) for e in hw.errors] == [
        (3, "serial"),
        (3, "rated_hashrate"),
        (3, "power_w"),
    ]


# ---- audit chain ---------------------------------------------------------------------------


def build_chain(n: int) -> list[AuditEntry]:
    entries: list[AuditEntry] = []
    for i in range(n):
        entries.append(
            make_entry(
                entries[-1] if entries else None,
                "operator",
                T0 + timedelta(minutes=i),
                "miner.update",
                f"miner:m{i}",
                {"fee_bps": i} if i else None,
                {"fee_bps": i + 1},
            )
        )
    return entries


def test_chain_links_and_verifies():
    entries = build_chain(5)
    assert entries[0].prev_hash == GENESIS and entries[1].prev_hash == entries[0].hash
    report = verify_chain(entries)
    assert report.ok and report.checked == 5 and report.head == entries[-1]
    assert verify_chain([]).ok


@pytest.mark.parametrize("field", ["who", "at", "action", "subject", "old", "new", "prev_hash"])
def test_an_edit_of_any_field_is_named(field):
    entries = build_chain(6)
    e = entries[3]
    changed = {
        "who": "someone-else",
        "at": e.at + timedelta(microseconds=1),
        "action": "miner.add",
        "subject": "miner:x",
        "old": '{"fee_bps":0}',
        "new": '{"fee_bps":99}',
        "prev_hash": "1" * 64,
    }[field]
    entries[3] = AuditEntry(**{**{f: getattr(e, f) for f in AuditEntry.__slots__}, field: changed})
    report = verify_chain(entries)
    assert not report.ok and report.bad_seq == 4 and "entry 4" in report.problem


def test_a_deleted_entry_is_named():
    entries = build_chain(6)
    del entries[2]
    report = verify_chain(entries)
    assert (report.ok, report.bad_seq) == (
        False,
        3,
    ) and "entries 3..3 are missing" in report.problem


def test_a_rehashed_forgery_is_caught_at_the_first_changed_entry_and_tail_needs_an_anchor():
    entries = build_chain(6)
    anchor = (entries[-1].seq, entries[-1].hash)
    # a forger re-hashes from entry 3 on: the chain is self-consistent again...
    forged = entries[:2]
    for old in entries[2:]:
        forged.append(
            make_entry(forged[-1], old.who, old.at, old.action, "miner:forged", None, None)
        )
    assert verify_chain(forged).ok
    # ...but not against an anchor recorded earlier
    assert verify_chain(forged, anchor).bad_seq == 6
    # truncating the newest entries is only visible against an anchor
    assert verify_chain(entries[:4]).ok
    report = verify_chain(entries[:4], anchor)
    assert not report.ok and "entries 5..6 were deleted" in report.problem
    assert verify_chain(entries, parse_anchor(f"{anchor[0]}:{anchor[1]}")).ok
    with pytest.raises(RegisterError, match="anchor"):
        parse_anchor("nonsense")


@settings(max_examples=200)
@given(licenses(), st.lists(aware, min_size=1, max_size=10))
def test_uncredited_periods_are_the_exact_complement(lics, times):
    from poolserver.register.licensing import EPOCH, uncredited_periods

    credited = credited_intervals(lics)
    gaps = uncredited_periods(credited)
    assert gaps[0][0] == EPOCH and gaps[-1][1] is None
    for t in times:
        in_gap = any(s <= t and (e is None or t < e) for s, e in gaps)
        assert in_gap != is_credited(credited, t)
