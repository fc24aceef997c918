"""The pool's commission income: per Kazakhstan day (and, for a reversal, the date of the
credit it reverses, whose rate values it), commission and any underfilled-window
remainder in BTC and KZT (at the day's rate), the payout network fees the pool paid (an
expense line), then monthly, yearly and report totals. Same reconciliation as the miners'
report: it refuses to write if miners' net + commission + remainder != matured rewards."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal

from reporting.miners import reconcile
from reporting.model import Period, PeriodData, kz_date
from reporting.rates import ROUNDING_RULE, btc_text, check_rates, kzt_value
from reporting.table import DISTRIBUTION_NOTE, Table, cells

COLUMNS = ("date", "blocks", "asset", "commission_sats", "commission_btc", "remainder_sats",
           "remainder_btc", "income_kzt", "rate_date", "rate_kzt_per_btc", "rate_source",
           "network_fees_sats", "network_fees_btc", "network_fees_kzt")

LABELS: dict[str, tuple[str, str, str]] = {
    "date": ("Күні (UTC+5)", "Дата (UTC+5)", "Date (UTC+5)"),
    "blocks": ("Блоктар", "Блоки", "Blocks"),
    "asset": ("Актив", "Актив", "Asset"),
    "commission_sats": ("Комиссия (сатоши)", "Комиссия (сатоши)", "Commission (satoshis)"),
    "commission_btc": ("Комиссия (BTC)", "Комиссия (BTC)", "Commission (BTC)"),
    "remainder_sats": ("Пул қалдығы (сатоши)", "Остаток пула (сатоши)",
                       "Pool remainder (satoshis)"),
    "remainder_btc": ("Пул қалдығы (BTC)", "Остаток пула (BTC)", "Pool remainder (BTC)"),
    "income_kzt": ("Табыс (теңге)", "Доход (тенге)", "Income (KZT)"),
    "rate_date": ("Бағам күні", "Дата курса", "Rate date"),
    "rate_kzt_per_btc": ("Бағам (теңге/BTC)", "Курс (тенге/BTC)", "Rate (KZT/BTC)"),
    "rate_source": ("Бағам көзі", "Источник курса", "Rate source"),
    "network_fees_sats": ("Желі комиссиялары, шығыс (сатоши)", "Сетевые комиссии, расход (сатоши)",
                          "Network fees, expense (satoshis)"),
    "network_fees_btc": ("Желі комиссиялары, шығыс (BTC)", "Сетевые комиссии, расход (BTC)",
                         "Network fees, expense (BTC)"),
    "network_fees_kzt": ("Желі комиссиялары, шығыс (теңге)", "Сетевые комиссии, расход (тенге)",
                         "Network fees, expense (KZT)"),
}


def _kzt(value: Decimal | None) -> str:
    return "" if value is None else f"{value:.2f}"


def pool_commission(period: Period, data: PeriodData, allow_missing_rates: bool = False
                    ) -> Table:
    totals = reconcile(data.miner_events, data.block_events)
    days_needed = {b.value_date for b in data.block_events} | {kz_date(x.at)
                                                               for x in data.expenses}
    check_rates(days_needed, data.rates, allow_missing_rates)
    # per (day, valuation day): [blocks, commission, remainder, fees]
    per_day: dict[tuple[date, date], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for b in data.block_events:
        acc = per_day[(kz_date(b.at), b.value_date)]
        acc[0] += 1 if b.reward_sats > 0 else -1
        acc[1] += b.pool_fee_sats
        acc[2] += b.pool_remainder_sats
    for x in data.expenses:
        per_day[(kz_date(x.at), kz_date(x.at))][3] += x.fee_sats
    rows = []
    groups: dict[str, list[object]] = {}
    missing: list[str] = []
    for day, value_day in sorted(per_day):
        blocks, fee, rem, net_fees = per_day[(day, value_day)]
        rate = data.rates.get(value_day)
        income = kzt_value(fee + rem, rate.kzt_per_btc) if rate else None
        fees_kzt = kzt_value(net_fees, rate.kzt_per_btc) if rate else None
        if rate is None:
            missing.append(value_day.isoformat())
        rows.append(cells([day.isoformat(), blocks, "BTC", fee, btc_text(fee), rem,
                           btc_text(rem), _kzt(income), value_day.isoformat(),
                           "" if rate is None else rate.kzt_per_btc,
                           "MISSING RATE" if rate is None else rate.source, net_fees,
                           btc_text(net_fees), _kzt(fees_kzt)]))
        for name in (f"month {day:%Y-%m}", f"year {day:%Y}", "report"):
            g = groups.setdefault(name, [0, 0, 0, Decimal(0), Decimal(0)])
            g[0] = int(g[0]) + fee  # type: ignore[call-overload]
            g[1] = int(g[1]) + rem  # type: ignore[call-overload]
            g[2] = int(g[2]) + net_fees  # type: ignore[call-overload]
            g[3] = g[3] + (income or 0)  # type: ignore[operator]
            g[4] = g[4] + (fees_kzt or 0)  # type: ignore[operator]
    order = sorted((n for n in groups if n != "report"), key=lambda n: (n.split()[1], n))
    out_totals = []
    for name in [*order, "report"] if groups else []:
        fee, rem, net_fees, income, fees_kzt = groups[name]
        out_totals.append((name, (
            ("commission_sats", str(fee)), ("commission_btc", btc_text(int(fee))),  # type: ignore[call-overload]
            ("remainder_sats", str(rem)), ("network_fees_sats", str(net_fees)),
            ("net_income_sats", str(int(fee) + int(rem) - int(net_fees))),  # type: ignore[call-overload]
            ("income_kzt", f"{income:.2f}"), ("network_fees_kzt", f"{fees_kzt:.2f}"))))
    out_totals.append(("reconciliation", tuple((k, str(v)) for k, v in totals.items())))
    meta = (("report", "pool-commission"), ("period_from", period.first.isoformat()),
            ("period_to", period.last.isoformat()), ("timezone", "UTC+5"),
            ("note", DISTRIBUTION_NOTE), ("rounding", ROUNDING_RULE),
            ("missing_rates", ",".join(sorted(set(missing)))))
    return Table("pool-commission", COLUMNS, tuple(rows), tuple(out_totals), meta, LABELS)
