"""The operator CLI through ``poolserver.cli.main``: add/list/suspend, CSV import with per-row
errors (dry run, strict), export round trip, and ``audit verify`` naming a tampered entry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from poolserver.cli import main
from poolserver.register.timeutil import kz_date
from poolserver.storage.engine import create_engine
from tests.test_register_rules import constructed_numbers

IDS = constructed_numbers(5, seed=31)
ADDR = "bcrt1qauhvvr3t2ylgl9f8wwc80lt07hhsnrsxdt9mkg"
# The CLI suspends from now: the license must be in force today, whatever day the tests run.
ISSUED = (kz_date(datetime.now(UTC)) - timedelta(days=365)).isoformat()


@pytest.fixture
def conf(db_url, tmp_path):
    path = tmp_path / "pool.toml"
    path.write_text(f'[storage]\nurl = "{db_url}"\n[register]\noperator = "alice"\n')
    return str(path)


def run(conf: str, *argv: str) -> int:
    return main(["--config", conf, *argv])


def test_add_list_suspend_and_clear_errors(conf, capsys):
    assert (
        run(
            conf,
            "miners",
            "add",
            "acme",
            "--name",
            "ACME LLP",
            "--iin-bin",
            IDS[0],
            "--payout-address",
            ADDR,
            "--fee",
            "1.5",
        )
        == 0
    )
    assert (
        run(conf, "licenses", "add", "acme", "KZ-1", "--issued", ISSUED, "--subtype", "I")
        == 0
    )
    capsys.readouterr()
    assert run(conf, "licenses", "suspend", "KZ-1", "--months", "9", "--reason", "x") == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "poolserver: suspension.months: 9 months given; the law allows 1 to 6 months (Art. 9(4))"
    )
    assert run(conf, "miners", "add", "beta", "--name", "B", "--iin-bin", "123") == 1
    assert "iin_bin: must be 12 digits" in capsys.readouterr().err
    assert run(conf, "licenses", "suspend", "KZ-1", "--months", "2", "--reason", "inspection") == 0
    assert run(conf, "miners", "list") == 0
    out = capsys.readouterr().out
    assert "acme\t" in out and "KZ-1\tsuspended" in out
    assert run(conf, "miners", "show", "acme") == 0
    out = capsys.readouterr().out
    assert ADDR in out and "1.50 %" in out and "UTC+5" in out and "inspection" in out
    assert run(conf, "audit", "log") == 0
    assert "alice license.suspend miner:acme license:KZ-1" in capsys.readouterr().out


def test_import_dry_run_strict_and_export_round_trip(conf, tmp_path, capsys):
    csv_path = tmp_path / "miners.csv"
    csv_path.write_text(
        "account,legal_name,iin_bin,contact,payout_address,fee_percent\n"
        f"acme,ACME LLP,{IDS[0]},ops@acme.kz,{ADDR},1.5\n"
        f"bad name,Bad,{IDS[1]},,,\n"
        f"beta,Beta IE,{IDS[2]},,,\n",
        encoding="utf-8",
    )
    assert run(conf, "miners", "import", str(csv_path), "--dry-run") == 1
    captured = capsys.readouterr()
    assert "row 3\taccount\tcharacter U+0020 at position 4" in captured.out
    assert "would import 2 row(s); 1 error(s)" in captured.err
    assert run(conf, "miners", "import", str(csv_path), "--strict") == 1
    assert "nothing imported (--strict)" in capsys.readouterr().err
    run(conf, "miners", "export")
    assert capsys.readouterr().out.count("\n") == 1  # header only: nothing was written
    assert run(conf, "miners", "import", str(csv_path)) == 1  # good rows in, bad one reported
    capsys.readouterr()
    out_path = tmp_path / "export.csv"
    assert run(conf, "miners", "export", str(out_path)) == 0
    assert out_path.read_text().splitlines() == [
        "account,legal_name,iin_bin,contact,payout_address,fee_percent",
        f"acme,ACME LLP,{IDS[0]},ops@acme.kz,{ADDR},1.50",
        f"beta,Beta IE,{IDS[2]},,,",
    ]
    hw = tmp_path / "hw.csv"
    hw.write_text(
        "serial,manufacturer,model,rated_hashrate,power_w,account,data_centre\n"
        "SN-1,Bitmain,S21,200T,3500,acme,DC-1\nSN-2,Bitmain,S21,200T,3500,ghost,DC-1\n"
    )
    assert run(conf, "hardware", "import", str(hw)) == 1
    assert "row 3\taccount\tno miner with account ghost" in capsys.readouterr().out
    assert run(conf, "hardware", "capacity", "acme", "--observed", "220T") == 0
    assert run(conf, "hardware", "capacity", "acme", "--observed", "221T") == 1
    assert "over_capacity" in capsys.readouterr().out


def test_audit_verify_names_the_edited_entry(conf, db_url, capsys):
    run(conf, "miners", "add", "acme", "--name", "ACME LLP", "--iin-bin", IDS[0])
    run(conf, "miners", "set-address", "acme", ADDR)
    run(conf, "licenses", "add", "acme", "KZ-1", "--issued", "2024-01-01", "--subtype", "II")
    capsys.readouterr()
    assert run(conf, "audit", "verify") == 0
    assert "OK: 3 entries" in capsys.readouterr().out
    run(conf, "audit", "head")
    anchor = capsys.readouterr().out.strip()
    guard = (
        ["DROP TRIGGER reg_audit_no_update", "DROP TRIGGER reg_audit_no_delete"]
        if db_url.startswith("sqlite")
        else ["DROP TRIGGER reg_audit_no_change ON reg_audit"]
    )
    tamper(db_url, *guard, "UPDATE reg_audit SET who = 'mallory' WHERE seq = 2")
    assert run(conf, "audit", "verify") == 1
    assert "FAIL: entry 2 was edited" in capsys.readouterr().out
    tamper(
        db_url,
        "UPDATE reg_audit SET who = 'alice' WHERE seq = 2",
        "DELETE FROM reg_audit WHERE seq = 3",
    )
    assert run(conf, "audit", "verify") == 0  # the newest entry's deletion needs the anchor
    capsys.readouterr()
    assert run(conf, "audit", "verify", "--anchor", anchor) == 1
    assert "entries 3..3 were deleted" in capsys.readouterr().out


def tamper(db_url: str, *statements: str) -> None:
    """What someone with database access could do behind the pool's back."""

    async def go() -> None:
        engine = create_engine(db_url)
        try:
            async with engine.begin() as conn:
                for sql in statements:
                    await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(go())
