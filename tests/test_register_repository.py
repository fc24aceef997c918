"""The register on real SQLite and PostgreSQL: CRUD, conflicts, histories, suspensions,
imports with per-row errors, and the audit log written in the same transaction."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from poolserver.register.chain import parse_anchor
from poolserver.register.csvrows import HARDWARE_SCHEMA, LICENSE_SCHEMA, miner_schema, parse_csv
from poolserver.register.errors import Conflict, NotFound, RegisterError
from poolserver.register.licensing import LicenseState
from poolserver.register.repository import RegisterRepository
from tests.test_register_rules import constructed_numbers

NOW = datetime(2025, 6, 1, 6, 0, tzinfo=UTC)
ADDR_A = "bcrt1qauhvvr3t2ylgl9f8wwc80lt07hhsnrsxdt9mkg"
ADDR_B = "mfoA4eYuzEFAU94bkMKPH6UF3i5qcw7zJ8"
IDS = constructed_numbers(6, seed=11)


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def repo(engine, clock) -> RegisterRepository:
    return RegisterRepository(engine, network="regtest", clock=clock)


async def seed(repo: RegisterRepository) -> None:
    await repo.add_miner("op", "acme", "ACME Mining LLP", IDS[0], "ops@acme.kz")
    await repo.add_license("op", "acme", "KZ-0001", date(2024, 1, 15), "I")


async def test_miner_license_and_status(repo, clock):
    await seed(repo)
    info = await repo.get_miner("acme")
    assert info is not None and info.iin_bin == IDS[0] and info.created_at == NOW
    lics = await repo.licenses_of("acme")
    assert lics[0].expires_on == date(2027, 1, 15)
    snap = await repo.snapshot()
    assert snap.status("acme", NOW).state is LicenseState.ACTIVE
    assert snap.status("ghost", NOW).state is LicenseState.NONE
    assert [m.account for m in await repo.miners()] == ["acme"]
    assert await repo.get_miner("ghost") is None


async def test_conflicts_and_bad_input_name_the_field(repo):
    await seed(repo)
    with pytest.raises(Conflict, match="account acme is already registered"):
        await repo.add_miner("op", "acme", "Other", IDS[1])
    with pytest.raises(Conflict, match="already registered to account acme") as e:
        await repo.add_miner("op", "other", "Other", IDS[0])
    assert e.value.field == "iin_bin"
    with pytest.raises(RegisterError, match="check digit") as e:
        await repo.add_miner("op", "x", "X", IDS[1][:11] + str((int(IDS[1][11]) + 1) % 10))
    with pytest.raises(Conflict, match="KZ-0001 is already registered to acme"):
        await repo.add_license("op", "acme", "KZ-0001", date(2024, 1, 1), "II")
    with pytest.raises(NotFound, match="no miner with account ghost"):
        await repo.add_license("op", "ghost", "KZ-9", date(2024, 1, 1), "II")
    with pytest.raises(RegisterError, match="who: must not be empty"):
        await repo.add_miner(" ", "y", "Y", IDS[2])
    # nothing refused left a trace: 2 entries (miner.add, license.add)
    assert await repo.audit_head() == 2


async def test_suspension_rules_and_lift(repo, clock):
    await seed(repo)
    start = NOW + timedelta(hours=1)
    with pytest.raises(RegisterError, match="1 to 6 months"):
        await repo.suspend("op", "KZ-0001", start, "x", months=7)
    await repo.suspend("op", "KZ-0001", start, "unplanned inspection", months=2)
    with pytest.raises(Conflict, match="overlaps"):
        await repo.suspend("op", "KZ-0001", start + timedelta(days=3), "again", months=1)
    snap = await repo.snapshot()
    assert snap.status("acme", NOW).state is LicenseState.ACTIVE  # future-dated
    assert snap.status("acme", start).state is LicenseState.SUSPENDED
    clock.now = start + timedelta(days=10)
    await repo.lift_suspension("op", "KZ-0001")
    snap = await repo.snapshot()
    assert snap.status("acme", clock.now).state is LicenseState.ACTIVE
    assert snap.status("acme", clock.now - timedelta(seconds=1)).state is LicenseState.SUSPENDED
    with pytest.raises(NotFound, match="not suspended"):
        await repo.lift_suspension("op", "KZ-0001")
    periods = (await repo.credited_periods())["acme"]
    assert periods[0][1] == start and periods[1][0] == clock.now


async def test_revocation(repo):
    await seed(repo)
    await repo.revoke("op", "KZ-0001", NOW, "court decision 2-123/2025")
    snap = await repo.snapshot()
    assert snap.status("acme", NOW).state is LicenseState.REVOKED
    with pytest.raises(Conflict, match="already revoked"):
        await repo.revoke("op", "KZ-0001", NOW, "again")
    with pytest.raises(Conflict, match="revoked"):
        await repo.suspend("op", "KZ-0001", NOW + timedelta(days=1), "x", months=1)


async def test_payout_address_and_fee_histories(repo, clock):
    await seed(repo)
    await repo.set_payout_address("op", "acme", ADDR_A)
    later = NOW + timedelta(days=30)
    await repo.set_payout_address("op", "acme", ADDR_B, later)
    assert await repo.payout_address_at("acme", NOW - timedelta(seconds=1)) is None
    assert await repo.payout_address_at("acme", NOW) == ADDR_A
    assert await repo.payout_address_at("acme", later - timedelta(microseconds=1)) == ADDR_A
    assert await repo.payout_address_at("acme", later) == ADDR_B
    with pytest.raises(RegisterError, match="payout_address: not a regtest"):
        await repo.set_payout_address("op", "acme", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4")
    with pytest.raises(RegisterError, match="effective_from: cannot be in the past"):
        await repo.set_payout_address("op", "acme", ADDR_A, NOW - timedelta(days=1))
    assert await repo.fee_at("acme", NOW) is None
    await repo.set_pool_fee("op", 200, note="launch")
    await repo.set_miner_fee("op", "acme", 150, NOW + timedelta(days=1))
    assert await repo.fee_at("acme", NOW) == 200
    assert await repo.fee_at("acme", NOW + timedelta(days=1)) == 150
    with pytest.raises(RegisterError, match="fee_bps"):
        await repo.set_miner_fee("op", "acme", 10_001)
    actions = [e.action async for e in repo.audit_entries()]
    assert actions[-4:] == [
        "payout_address.set",
        "payout_address.set",
        "fee.pool.set",
        "fee.miner.set",
    ]


async def test_hardware_register(repo):
    await seed(repo)
    await repo.add_miner("op", "beta", "Beta IE", IDS[1])
    rows = parse_csv(
        "serial,manufacturer,model,rated_hashrate,power_w,account,data_centre,registry_number,"
        "registry_date\n"
        "SN-1,Bitmain,S21,200T,3500,acme,DC-1,R-77,2025-01-10\n"
        "SN-2,Bitmain,S19 Pro,110T,3250,acme,DC-1,,\n"
        "SN-3,MicroBT,M50,120T,3400,beta,DC-2,,\n",
        HARDWARE_SCHEMA,
    )
    report = await repo.import_rows("op", rows)
    assert report.committed and report.applied == [2, 3, 4] and report.errors == []
    ms = await repo.machines("acme")
    assert [m.serial for m in ms] == ["SN-1", "SN-2"]
    assert ms[0].registry_date == date(2025, 1, 10) and ms[0].rated_hashrate == 200 * 10**12
    again = parse_csv(
        "serial,manufacturer,model,rated_hashrate,power_w,account,data_centre\n"
        "SN-3,Bitmain,S21,200T,3500,acme,DC-1\n",
        HARDWARE_SCHEMA,
    )
    report = await repo.import_rows("op", again)
    assert [(e.row, e.field) for e in report.errors] == [(2, "serial")]
    assert "already registered to beta" in report.errors[0].reason
    await repo.remove_machine("op", "SN-2")
    assert [m.serial for m in await repo.machines()] == ["SN-1", "SN-3"]


async def test_import_per_row_errors_dry_run_and_strict(repo):
    data = (
        "account,legal_name,iin_bin,contact,payout_address,fee_percent\n"
        f"acme,ACME LLP,{IDS[0]},,{ADDR_A},1.5\n"
        f"beta,Beta,{IDS[0]},,,\n"  # same IIN as acme: a database-level conflict
        f"gamma,Gamma,{IDS[2]},,nonsense,\n"  # parse error
        f"delta,Delta,{IDS[3]},,,\n"
    )
    parsed = parse_csv(data, miner_schema("regtest"))
    dry = await repo.import_rows("op", parsed, dry_run=True)
    assert not dry.committed and dry.applied == [2, 5]
    assert sorted((e.row, e.field) for e in dry.errors) == [(3, "iin_bin"), (4, "payout_address")]
    assert await repo.miners() == [] and await repo.audit_head() == 0
    strict = await repo.import_rows("op", parsed, strict=True)
    assert not strict.committed and strict.applied == [] and await repo.miners() == []
    done = await repo.import_rows("op", parsed)
    assert done.committed and done.applied == [2, 5]
    assert [m.account for m in await repo.miners()] == ["acme", "delta"]
    assert await repo.payout_address_at("acme", NOW) == ADDR_A
    assert await repo.fee_at("acme", NOW) == 150
    lic = parse_csv(
        "account,number,issued_on,subtype\nacme,KZ-1,2024-02-01,I\nghost,KZ-2,2024-02-01,II\n",
        LICENSE_SCHEMA,
    )
    rep = await repo.import_rows("op", lic)
    assert rep.applied == [2] and [(e.row, e.field) for e in rep.errors] == [(3, "account")]
    assert (await repo.verify_audit()).ok


async def test_audit_chain_in_the_database_detects_edits_and_deletes(repo, engine):
    await seed(repo)
    await repo.set_payout_address("op", "acme", ADDR_A)
    await repo.suspend("op", "KZ-0001", NOW, "inspection", months=1)
    report = await repo.verify_audit()
    assert report.ok and report.checked == 4
    anchor = f"{report.head.seq}:{report.head.hash}"
    async with engine.begin() as conn:  # the database refuses edits...
        with pytest.raises(Exception, match="append-only"):
            await conn.execute(text("UPDATE reg_audit SET who = 'x' WHERE seq = 2"))
    # ...so a tamperer first drops the guard, then edits entry 2's new value
    await _drop_guard(engine)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE reg_audit SET new = replace(new, :a, :b) WHERE seq = 3"),
            {"a": ADDR_A, "b": "bcrt1qattacker"},
        )
    report = await repo.verify_audit()
    assert not report.ok and report.bad_seq == 3 and "entry 3 was edited" in report.problem
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM reg_audit WHERE seq IN (3, 4)"))
    report = await repo.verify_audit()
    assert report.ok  # deleting the newest entries is invisible without an anchor...
    report = await repo.verify_audit(parse_anchor(anchor))
    assert not report.ok and "entries 3..4 were deleted" in report.problem  # ...but not with one


async def _drop_guard(engine) -> None:
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            await conn.execute(text("DROP TRIGGER reg_audit_no_update"))
            await conn.execute(text("DROP TRIGGER reg_audit_no_delete"))
        else:
            await conn.execute(text("DROP TRIGGER reg_audit_no_change ON reg_audit"))


async def test_concurrent_writers_never_fork_the_chain(repo):
    await repo.add_miner("op", "acme", "ACME", IDS[0])
    await asyncio.gather(*[repo.set_miner_fee(f"op{i}", "acme", 100 + i) for i in range(12)])
    report = await repo.verify_audit()
    assert report.ok and report.checked == 13
