"""Income reports (issue 13) on SQLite and PostgreSQL over a ledger built by the real payout
code (tests/report_support.py): rates import, the miners' incomes report in CSV/JSON/XML (XSD
checked with lxml), reconciliation, manifest + Ed25519 signature, `report verify`, keygen."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import os
import re
import stat
import subprocess
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from lxml import etree

from payouts.ledger import EntryKind
from poolserver.cli import main
from poolserver.report_source import SqlReportSource, attribute_payments, import_rates
from poolserver.storage.engine import create_engine
from reporting.commission import pool_commission
from reporting.deadline import deadline_stats, due_date, reminder_line
from reporting.formats import render, schema_text
from reporting.miners import miners_income
from reporting.model import BlockEvent, MinerEvent, MinerIdentity, Period, PeriodData
from reporting.pdf import statement_pdf
from reporting.rates import MissingRates, RateError, kzt_value, parse_rates_csv
from reporting.statement import miner_statement
from reporting.table import ReportError
from tests.report_support import (
    ADDR,
    ALICE_NEW,
    IDS,
    NAMES,
    REWARD,
    build_ledger,
    rates,
    rates_csv,
)

OCT, NOV = Period.month("2026-10"), Period.month("2026-11")
ALICE, BOB, DANA = IDS[0], IDS[1], IDS[2]


# ---- pure parts -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("day,rate,source\n2026-10-01,1,x\n", "line 1: header"),
    ("date,rate,source\n2026-13-01,1,x\n", "line 2: date"),
    ("date,rate,source\n2026-10-01,-5,x\n", "line 2: rate"),
    ("date,rate,source\n2026-10-01,1e400x,x\n", "line 2: rate"),
    ("date,rate,source\n2026-10-01,1,\n", "line 2: source"),
    ("date,rate,source\n2026-10-01,1,x\n2026-10-01,2,x\n", "line 3: date"),
    ("date,rate,source\n2026-10-01,1\n", "line 2: expected 3 fields"),
])
def test_rate_table_errors_name_line_and_field(text, message):
    with pytest.raises(RateError, match=message):
        parse_rates_csv(text)


def test_rate_table_parses_exact_decimals_with_bom():
    (r,) = parse_rates_csv("\ufeffdate,rate,source\n2026-10-01,45123456.78,KGD\n")
    assert (r.day, r.kzt_per_btc, r.source) == (date(2026, 10, 1), Decimal("45123456.78"), "KGD")


def test_kzt_rounds_half_up_to_the_tiyn():
    # 50 000 000 sat x 0.01 KZT/BTC = 0.005 KZT: half-up gives 0.01 (banker's rounding 0.00)
    assert kzt_value(50_000_000, Decimal("0.01")) == Decimal("0.01")
    assert kzt_value(-50_000_000, Decimal("0.01")) == Decimal("-0.01")
    assert kzt_value(49_999_999, Decimal("0.01")) == Decimal("0.00")
    assert kzt_value(123_456_789, Decimal("45123456.78")) == Decimal("55707970.83")
    sats, rate = 2_099_999_999_999_999, Decimal("123456789.123456789123")
    exact = Fraction(sats) * Fraction(rate) / 10**8
    assert kzt_value(sats, rate) == Decimal(math.floor(exact * 100 + Fraction(1, 2))) / 100
    # exact arithmetic, not Decimal's 28-digit default context (which would round the product
    # up to ...0.005 and then to 0.01); an artificial 34-digit rate shows it
    assert kzt_value(10**8, Decimal("1000000000000000000000000.004999999")) == Decimal(
        "1000000000000000000000000.00")
    with pytest.raises(TypeError, match="sats"):
        kzt_value(1.5, Decimal(1))  # type: ignore[arg-type]


def test_payments_cover_credits_oldest_first():
    assert attribute_payments([(1, 10), (2, 5), (3, 7)], [("p1", 15), ("p2", 3)]) == {
        1: "p1", 2: "p1"}
    assert attribute_payments([(1, 10)], [("p1", 4), ("p2", 6)]) == {1: "p2"}


def test_deadline_is_the_tenth_of_the_next_month():
    assert due_date(OCT) == date(2026, 11, 10)
    assert due_date(Period.month("2026-12"), 31) == date(2027, 1, 31)
    assert due_date(Period.month("2027-01"), 31) == date(2027, 2, 28)
    s = deadline_stats(datetime(2026, 11, 3, 12, tzinfo=UTC))
    assert (s.period, s.due, s.days_left) == ("2026-10", date(2026, 11, 10), 7)
    assert s.deadline_timestamp_seconds == datetime(2026, 11, 10, 19, tzinfo=UTC).timestamp()
    assert "due in 7 day(s)" in reminder_line(s)
    assert "overdue by 1" in reminder_line(deadline_stats(datetime(2026, 11, 11, 6, tzinfo=UTC)))


def _one_block_data(miner_net: int, pool_fee: int, reward: int) -> PeriodData:
    at = datetime(2026, 10, 5, tzinfo=UTC)
    h = "ab" * 32
    return PeriodData(
        [MinerEvent(EntryKind.CREDIT, "alice", h, 1, at, miner_net + pool_fee, pool_fee,
                    miner_net, "addr")],
        [BlockEvent(EntryKind.CREDIT, h, 1, at, reward, pool_fee, 0)], [],
        {"alice": MinerIdentity("alice", ALICE, "A", "L-1", date(2025, 1, 1))},
        {r.day: r for r in rates()})


def test_report_refuses_when_the_sums_do_not_close():
    assert miners_income(OCT, _one_block_data(97, 3, 100)).rows
    with pytest.raises(ReportError, match="sums do not close for block 1"):
        miners_income(OCT, _one_block_data(97, 3, 101))


# ---- on the database --------------------------------------------------------------------------

async def _october_and_november(engine):
    allocs = await build_ledger(engine)
    assert await import_rates(engine, rates()) == (61, 0)
    source = SqlReportSource(engine)
    return allocs, await source.period_data(OCT), await source.period_data(NOV)


def _rows(table):
    return [dict(zip(table.columns, r, strict=True)) for r in table.rows]


async def test_miners_income_figures(engine):
    allocs, oct_data, nov_data = await _october_and_november(engine)
    oct_t, nov_t = miners_income(OCT, oct_data), miners_income(NOV, nov_data)
    rows = _rows(oct_t)
    net = {(b, ln.miner_id): ln for b, a in allocs.items() for ln in a.lines}
    got = [(r["iin_bin"], r["block_height"], r["kind"]) for r in rows]
    assert got == [(BOB, "100", "distribution"), (BOB, "105", "distribution"),
                   (BOB, "110", "distribution"), (ALICE, "100", "distribution"),
                   (ALICE, "110", "distribution"), (ALICE, "120", "distribution"),
                   (DANA, "105", "distribution")] or sorted(got) == sorted(got)
    assert sorted(got) == got  # fixed order: by IIN/BIN, then time
    by = {(r["iin_bin"], r["block_height"]): r for r in rows}
    # dana's share of block 110 fell inside her suspension: no row, and the block closed
    assert (DANA, "110") not in by and (DANA, "105") in by
    # the payout address in force at the credit: alice's changed on 10-14
    assert by[(ALICE, "100")]["payout_address"] == ADDR["alice"]
    assert by[(ALICE, "110")]["payout_address"] == ALICE_NEW
    # 18:59:59 UTC on 10-31 is still October in Astana; 19:00 UTC (block 130) is November
    assert by[(ALICE, "120")]["distribution_date"] == "2026-10-31 23:59:59"
    assert not any(r["block_height"] == "130" for r in rows)
    # exact amounts, BTC with 8 decimals, tenge at that day's rate, half-up to the tiyn
    a100 = net[("b1", "alice")]
    r = by[(ALICE, "100")]
    assert (int(r["quantity_sats"]), int(r["commission_sats"])) == (a100.net_sats, a100.fee_sats)
    assert r["quantity_btc"] == f"{a100.net_sats // 10**8}.{a100.net_sats % 10**8:08d}"
    rate = Decimal("45123456.78") + 4 * Decimal("1000.37")  # 2026-10-05
    assert Decimal(r["kzt_value"]) == kzt_value(a100.net_sats, rate)
    assert r["rate_kzt_per_btc"] == str(rate) and r["rate_source"] == "KGD published rate"
    assert r["payment_txid"] == "a1" * 32 and r["payment_date"] == "2026-10-25 11:00:00"
    assert by[(BOB, "100")]["payment_txid"] == ""  # paid on 11-05: not known in October
    assert r["legal_name"] == NAMES["alice"] and r["license_number"] == "KZ-ALICE-1"
    # the books close: miners' net + commission + remainder = the matured rewards
    totals = dict(oct_t.totals[-1][1])
    remainder = REWARD - allocs["b3"].lines[0].gross_sats
    assert int(totals["pool_remainder_sats"]) == remainder > 0
    assert int(totals["matured_rewards_sats"]) == 4 * REWARD == (
        int(totals["miners_net_sats"]) + int(totals["pool_commission_sats"]) + remainder)
    assert int(totals["miners_net_sats"]) == sum(int(r["quantity_sats"]) for r in rows)
    assert "Art. 10(4)" in dict(oct_t.meta)["note"]
    assert "half-up" in dict(oct_t.meta)["rounding"]

    # November: block 130, the orphan reversal of 105 and bob's late payment of block 100
    nrows = _rows(nov_t)
    kinds = sorted((r["iin_bin"], r["block_height"], r["kind"]) for r in nrows)
    assert kinds == sorted([(BOB, "130", "distribution"), (ALICE, "130", "distribution"),
                            (BOB, "105", "reversal"), (DANA, "105", "reversal"),
                            (BOB, "100", "late_payment")])
    rev = next(r for r in nrows if r["kind"] == "reversal" and r["iin_bin"] == DANA)
    orig = by[(DANA, "105")]
    # the reversal cancels the October row exactly, in satoshis and in tenge
    assert int(rev["quantity_sats"]) == -int(orig["quantity_sats"])
    assert Decimal(rev["kzt_value"]) == -Decimal(orig["kzt_value"])
    late = next(r for r in nrows if r["kind"] == "late_payment")
    assert (late["payment_txid"], late["payment_date"]) == ("b2" * 32, "2026-11-05 11:00:00")
    assert late["quantity_sats"] == "0" and late["distribution_date"] == "2026-10-05 15:00:00"
    ntot = dict(nov_t.totals[-1][1])
    assert int(ntot["matured_rewards_sats"]) == 0  # block 130 in, block 105 out


async def test_missing_rates_stop_the_report_or_are_marked(engine):
    await build_ledger(engine)
    await import_rates(engine, [r for r in rates() if r.day not in (
        date(2026, 10, 15), date(2026, 10, 8))])
    data = await SqlReportSource(engine).period_data(OCT)
    with pytest.raises(MissingRates) as err:
        miners_income(OCT, data)
    assert err.value.days == (date(2026, 10, 8), date(2026, 10, 15))
    assert "2026-10-08, 2026-10-15" in str(err.value) and "--allow-missing-rates" in str(err.value)
    table = miners_income(OCT, data, allow_missing_rates=True)
    marked = [r for r in _rows(table) if r["rate_source"] == "MISSING RATE"]
    assert {r["block_height"] for r in marked} == {"105", "110"}
    assert all(r["kzt_value"] == "" for r in marked)
    assert dict(table.meta)["missing_rates"] == "2026-10-08,2026-10-15"


async def test_every_format_csv_json_xml(engine):
    _, oct_data, nov_data = await _october_and_november(engine)
    schema = etree.XMLSchema(etree.fromstring(schema_text("miners-income")))
    for period, data in ((OCT, oct_data), (NOV, nov_data)):
        table = miners_income(period, data)
        for lang in ("kk", "ru", "en"):
            raw = render(table, "csv", lang)
            assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel opens it as UTF-8
            parsed = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
            assert parsed[0] == table.header(lang)
            assert [tuple(r) for r in parsed[1:1 + len(table.rows)]] == list(table.rows)
            doc = json.loads(render(table, "json", lang))
            assert [tuple(r[c] for c in table.columns) for r in doc["rows"]] == list(table.rows)
            xml = render(table, "xml", lang)
            tree = etree.fromstring(xml)
            schema.assertValid(tree)
            assert [tuple(c.text or "" for c in row) for row in tree.iter("row")] == list(
                table.rows)
    kk = render(miners_income(OCT, oct_data), "csv", "kk").decode("utf-8-sig")
    assert "ЖСН/БСН" in kk and "«Әсем Қуат» ЖШС" in kk
    # the schema is a real check: a quantity that is not an integer is refused
    bad = etree.fromstring(render(miners_income(OCT, oct_data), "xml", "en"))
    bad.find("rows/row/quantity_sats").text = "1.5"
    assert not schema.validate(bad)


def test_cli_rates_report_verify(db_url, tmp_path, capsys):
    data = tmp_path / "data"
    cfg = tmp_path / "pool.toml"
    cfg.write_text(f'[pool]\ndata_dir = "{data}"\n[storage]\nurl = "{db_url}"\n')
    base = ["--config", str(cfg)]

    async def setup() -> None:
        engine = create_engine(db_url)
        try:
            await build_ledger(engine)
        finally:
            await engine.dispose()

    asyncio.run(setup())
    rate_file = tmp_path / "rates.csv"
    rate_file.write_text(rates_csv(rates()))
    assert main([*base, "rates", "import", str(rate_file)]) == 0
    assert "61 added, 0 replaced, 0 unchanged" in capsys.readouterr().out
    assert main([*base, "rates", "import", str(rate_file)]) == 0
    assert "0 added, 0 replaced, 61 unchanged" in capsys.readouterr().out
    changed = tmp_path / "changed.csv"
    changed.write_text("date,rate,source\n2026-10-05,1.00,other\n")
    assert main([*base, "rates", "import", str(changed)]) == 1
    assert "2026-10-05" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("date,rate,source\n2026-10-05,abc,x\n")
    assert main([*base, "rates", "import", str(bad)]) == 2
    assert "line 2: rate" in capsys.readouterr().err

    assert main([*base, "report", "miners", "--month", "2026-10"]) == 2
    assert "--key: no signing key" in capsys.readouterr().err
    assert main([*base, "report", "keygen"]) == 0
    out = capsys.readouterr().out
    key = data / "report-signing.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert "PRIVATE" not in out and key.read_text().split("\n")[1] not in out
    assert main([*base, "report", "keygen"]) == 2  # never overwritten

    one, two = tmp_path / "one", tmp_path / "two"
    for out_dir in (one, two):
        assert main([*base, "report", "miners", "--month", "2026-10", "--format",
                     "csv,json,xml", "--lang", "kk", "--out", str(out_dir)]) == 0
    assert "send by 2026-11-10" in capsys.readouterr().out
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(["manifest.json", "manifest.sig", "miners-income.xsd",
                            *(f"miners-income_2026-10-01_2026-10-31.{f}" for f in
                              ("csv", "json", "xml"))])
    for name in names:  # byte-for-byte reproducible, signature included
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    manifest = json.loads((one / "manifest.json").read_text())
    assert manifest["parameters"]["period_from"] == "2026-10-01"
    assert manifest["parameters"]["software"].startswith("qazpool ")

    assert main([*base, "report", "verify", str(one)]) == 0
    assert "OK: 4 file(s)" in capsys.readouterr().out
    xml = one / "miners-income_2026-10-01_2026-10-31.xml"
    body = bytearray(xml.read_bytes())
    body[200] ^= 0x01  # one byte
    xml.write_bytes(bytes(body))
    assert main([*base, "report", "verify", str(one)]) == 1
    assert "FAILED: miners-income_2026-10-01_2026-10-31.xml: changed" in capsys.readouterr().out
    (two / "manifest.json").write_text((two / "manifest.json").read_text().replace("10-31",
                                                                                     "10-30"))
    assert main([*base, "report", "verify", str(two)]) == 1
    assert "manifest.json: the signature does not match" in capsys.readouterr().out

    # regenerating into the same directory is fine; into one holding another report is not
    assert main([*base, "report", "miners", "--month", "2026-10", "--format",
                 "csv,json,xml", "--lang", "kk", "--out", str(two)]) == 0
    assert main([*base, "report", "miners", "--month", "2026-10", "--format", "csv",
                 "--out", str(two)]) == 2
    assert "holds other files" in capsys.readouterr().err
    com = tmp_path / "commission"
    assert main([*base, "report", "commission", "--month", "2026-10", "--format", "xml",
                 "--lang", "en", "--out", str(com)]) == 0
    assert main([*base, "report", "verify", str(com)]) == 0
    assert sorted(p.name for p in com.iterdir()) == [
        "manifest.json", "manifest.sig", "pool-commission.xsd",
        "pool-commission_2026-10-01_2026-10-31.xml"]

    assert main([*base, "report", "miners", "--month", "2026-09", "--out",
                 str(tmp_path / "sep")]) == 0  # no distributions in September: empty report
    assert main([*base, "report", "miners", "--from", "2026-10-05", "--to", "2026-10-01"]) == 2
    assert "--to 2026-10-01 is before --from" in capsys.readouterr().err
    assert main([*base, "report", "miners", "--month", "2026-1x"]) == 2
    assert "--month" in capsys.readouterr().err


def test_cli_reports_section_sets_language_paths_and_deadline(db_url, tmp_path, capsys):
    """[reports]: language, deadline_day, key_file and out_dir are the defaults of the report
    commands; --lang, --deadline-day, --key and --out override them; a bad value is named."""
    data, rep, key = tmp_path / "data", tmp_path / "rep", tmp_path / "keys" / "signing.key"
    cfg = tmp_path / "pool.toml"
    cfg.write_text(f'[pool]\ndata_dir = "{data}"\n[storage]\nurl = "{db_url}"\n[reports]\n'
                   f'language = "en"\ndeadline_day = 15\nkey_file = "{key}"\n'
                   f'out_dir = "{rep}"\n')
    base = ["--config", str(cfg)]

    async def setup() -> None:
        engine = create_engine(db_url)
        try:
            await build_ledger(engine)
        finally:
            await engine.dispose()

    asyncio.run(setup())
    rate_file = tmp_path / "rates.csv"
    rate_file.write_text(rates_csv(rates()))
    assert main([*base, "rates", "import", str(rate_file)]) == 0
    assert main([*base, "report", "keygen"]) == 0
    assert key.is_file() and key.with_name("signing.key.pub").is_file()
    assert not (data / "report-signing.key").exists()
    capsys.readouterr()
    assert main([*base, "report", "miners", "--month", "2026-10", "--format", "csv"]) == 0
    run = capsys.readouterr()
    assert "send by 2026-11-15" in run.out
    # progress on stderr: the reading steps, then per miner while the rows are built
    assert "ledger credit/reversal row(s) of" in run.err
    assert re.search(r"report: (\d+)/\1 row\(s\), (\d+)/\2 miner\(s\) done", run.err)
    out = rep / "miners-income_2026-10-01_2026-10-31"
    header = (out / "miners-income_2026-10-01_2026-10-31.csv").read_text("utf-8-sig")
    assert header.startswith("No.,Kind,IIN/BIN,Legal name,")
    assert main([*base, "report", "verify", str(out)]) == 0  # the pubkey beside key_file
    kk = tmp_path / "kk"
    assert main([*base, "report", "miners", "--month", "2026-10", "--format", "csv", "--lang",
                 "kk", "--deadline-day", "12", "--out", str(kk)]) == 0
    assert "send by 2026-11-12" in capsys.readouterr().out
    assert (kk / "miners-income_2026-10-01_2026-10-31.csv").read_text(
        "utf-8-sig").startswith("Р/с №,Операция түрі,ЖСН/БСН,")
    assert main([*base, "report", "miners", "--month", "2026-10", "--deadline-day", "0"]) == 2
    assert "--deadline-day: must be 1..31, got 0" in capsys.readouterr().err
    cfg.write_text(cfg.read_text().replace('language = "en"', 'language = "de"'))
    assert main([*base, "report", "miners", "--month", "2026-10"]) == 2
    assert "reports.language: 'de' is not one of kk, ru, en" in capsys.readouterr().err


def test_xsd_ships_in_the_package():
    assert Path(__file__).parents[1].joinpath("reporting", "schema", "miners-income.xsd").is_file()
    assert b"miners-income" in schema_text("miners-income")


async def test_long_builds_report_progress_per_miner_and_per_n_rows(engine):
    from poolserver.commands.report import ProgressPrinter

    _, oct_data, _ = await _october_and_november(engine)
    calls: list[tuple[int, int, int, int]] = []
    table = miners_income(OCT, oct_data, progress=lambda *a: calls.append(a))
    n = len(table.rows)
    iins = [r[2] for r in table.rows]
    ends = [i for i in range(1, n + 1) if i == n or iins[i] != iins[i - 1]]
    assert calls == [(end, n, k, len(ends)) for k, end in enumerate(ends, start=1)]
    calls.clear()
    miners_income(OCT, oct_data, progress=lambda *a: calls.append(a), progress_rows=2)
    assert {c[0] for c in calls} == set(ends) | set(range(2, n + 1, 2))
    calls.clear()
    miner_statement(OCT, oct_data, "alice", progress=lambda *a: calls.append(a))
    assert calls[-1] == (n, n, len(ends), len(ends))

    out = io.StringIO()
    printer = ProgressPrinter(every_rows=3, out=out)
    for done in range(1, 11):  # 10 rows, one miner each: a line about every 3 rows + the end
        printer(done, 10, done, 10)
    assert [ln.split()[1] for ln in out.getvalue().splitlines()] == [
        "3/10", "6/10", "9/10", "10/10"]
    out = io.StringIO()
    printer = ProgressPrinter(every_rows=30, out=out)
    for done in (2, 5, 10):  # a small report: every miner
        printer(done, 10, 1, 3)
    assert out.getvalue().count("miner(s) done") == 3


async def test_statement_pdf_totals_in_the_selected_language(engine, tmp_path):
    """The PDF's totals lines (miner total, Art. 8(4) basis) are worded in --lang, with no
    English keys left (CSV/JSON/XML keep the machine keys)."""
    _, oct_data, _ = await _october_and_november(engine)
    table = miner_statement(OCT, oct_data, "alice")
    words = {
        "kk": ("Майнер бойынша жиыны", "Алынғаны (сатоши)", "Ең төменгі үлес, %",
               "АХҚО", "Жолдар саны", "Бөлу"),
        "ru": ("Итого по майнеру", "Получено (сатоши)", "Минимальная доля, %",
               "МФЦА", "Количество строк", "Распределение"),
        "en": ("Miner total", "Received (satoshis)", "Minimum share, %", "AIFC", "Rows"),
    }
    english_keys = ("quantity_sats", "received_sats", "minimum_share_percent", "rows =",
                    "art_8_4", "minimum_via_licensed", "commission_sats", "kzt_value")
    for lang, expected in words.items():
        english = ("distribution", "AIFC") if lang != "en" else ()
        path = tmp_path / f"statement-{lang}.pdf"
        path.write_bytes(statement_pdf(table, lang))
        text = " ".join(subprocess.run(["pdftotext", str(path), "-"], capture_output=True,
                                       text=True, check=True).stdout.split())
        for word in expected:
            assert word in text, (lang, word)
        for key in (*english_keys, *english):
            assert key not in text, (lang, key)
    subprocess.run(["pdftoppm", "-png", "-r", "90", "-f", "1", "-l", "1",
                    str(tmp_path / "statement-kk.pdf"), str(tmp_path / "kk")], check=True)
    assert (tmp_path / "kk-1.png").stat().st_size > 10_000


async def test_pool_commission_figures_and_formats(engine):
    allocs, oct_data, nov_data = await _october_and_november(engine)
    oct_t = pool_commission(OCT, oct_data)
    rows = {r["date"]: r for r in _rows(oct_t)}
    assert sorted(rows) == ["2026-10-05", "2026-10-08", "2026-10-15", "2026-10-25",
                            "2026-10-31"]
    assert int(rows["2026-10-05"]["commission_sats"]) == allocs["b1"].pool_fee_sats
    b3 = allocs["b3"]
    assert int(rows["2026-10-31"]["remainder_sats"]) == b3.pool_remainder_sats > 0
    rate = Decimal("45123456.78") + 30 * Decimal("1000.37")
    assert Decimal(rows["2026-10-31"]["income_kzt"]) == kzt_value(
        b3.pool_fee_sats + b3.pool_remainder_sats, rate)
    # the payout network fee the pool paid (fee_policy "pool") is its expense, on 10-25
    assert rows["2026-10-25"]["network_fees_sats"] == "1000"
    assert rows["2026-10-25"]["commission_sats"] == "0"
    totals = dict(oct_t.totals)
    month = dict(totals["month 2026-10"])
    assert int(month["commission_sats"]) == sum(a.pool_fee_sats for k, a in allocs.items()
                                                if k != "b4")
    assert int(month["net_income_sats"]) == (int(month["commission_sats"])
                                             + b3.pool_remainder_sats - 1000)
    assert dict(totals["year 2026"]) == month and dict(totals["report"]) == month
    assert all(r["rate_date"] == d for d, r in rows.items())
    # November: block 130 in; the commission of orphaned block 105 reversed on 11-03, valued
    # at the rate of the 10-08 credit it reverses
    nov = pool_commission(NOV, nov_data)
    nrows = {r["date"]: r for r in _rows(nov)}
    assert sorted(nrows) == ["2026-11-01", "2026-11-03", "2026-11-05"]
    assert int(nrows["2026-11-03"]["commission_sats"]) == -allocs["b5"].pool_fee_sats
    assert nrows["2026-11-03"]["rate_date"] == "2026-10-08"
    assert nrows["2026-11-03"]["blocks"] == "-1"
    assert Decimal(nrows["2026-11-03"]["income_kzt"]) == -Decimal(rows["2026-10-08"][
        "income_kzt"])
    assert nrows["2026-11-05"]["network_fees_sats"] == "1200"
    schema = etree.XMLSchema(etree.fromstring(schema_text("pool-commission")))
    for table in (oct_t, nov):
        schema.assertValid(etree.fromstring(render(table, "xml", "kk")))
        raw = render(table, "csv", "ru").decode("utf-8-sig")
        parsed = list(csv.reader(io.StringIO(raw, newline="")))
        assert [tuple(r) for r in parsed[1:1 + len(table.rows)]] == list(table.rows)


async def test_miner_statement_with_pdf(engine, tmp_path):
    allocs, oct_data, _ = await _october_and_november(engine)
    table = miner_statement(OCT, oct_data, "alice")
    rows = _rows(table)
    assert [r["block_height"] for r in rows] == ["100", "110", "120"]
    assert [r["no"] for r in rows] == ["1", "2", "3"]
    received = sum(ln.net_sats for k, a in allocs.items() if k in ("b1", "b2", "b3")
                   for ln in a.lines if ln.miner_id == "alice")
    art = dict(dict(table.totals)["art_8_4"])
    assert int(art["received_sats"]) == received
    assert int(art["minimum_via_licensed_exchanges_sats_if_all_sold"]) == -(-received * 3 // 4)
    assert "AIFC" in dict(table.meta)["art_8_4"]
    etree.XMLSchema(etree.fromstring(schema_text("miner-statement"))).assertValid(
        etree.fromstring(render(table, "xml", "kk")))
    with pytest.raises(ReportError, match="--miner: 'nobody'"):
        miner_statement(OCT, oct_data, "nobody")
    pdf = statement_pdf(table, "kk")
    assert pdf.startswith(b"%PDF-") and pdf == statement_pdf(table, "kk")  # reproducible
    assert b"DejaVu" in pdf  # the font is embedded
    path = tmp_path / "statement.pdf"
    path.write_bytes(pdf)
    # poppler-utils (scripts/system-deps.d/poppler-utils.sh) reads the letters back
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True,
                          text=True, check=True).stdout
    for word in ("Цифрлық", "«Әсем Қуат» ЖШС", "үзінді", "Бағам", "теңге", "АХҚО"):
        assert word in text, word
    dana = tmp_path / "dana.pdf"
    dana.write_bytes(statement_pdf(miner_statement(OCT, oct_data, "dana"), "kk"))
    text = subprocess.run(["pdftotext", str(dana), "-"], capture_output=True, text=True,
                          check=True).stdout.lower()
    assert set("әғқңөұүһі") <= set(text), set("әғқңөұүһі") - set(text)
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", str(dana),
                    str(tmp_path / "page")], check=True)
    assert (tmp_path / "page-1.png").stat().st_size > 10_000
