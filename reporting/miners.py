"""The miners' incomes report: one row per miner per distribution (and per reversal)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from payouts.ledger import EntryKind
from reporting.model import (
    BlockEvent,
    MinerEvent,
    MinerIdentity,
    Period,
    PeriodData,
    kz_text,
)
from reporting.rates import ROUNDING_RULE, btc_text, check_rates, kzt_value
from reporting.table import (
    DISTRIBUTION_NOTE,
    PROGRESS_ROWS,
    Progress,
    ReportError,
    Table,
    cells,
)

MISSING = "MISSING RATE"

COLUMNS = ("no", "kind", "iin_bin", "legal_name", "license_number", "license_issued_on",
           "payout_address", "distribution_date", "block_height", "block_hash", "asset",
           "quantity_sats", "quantity_btc", "commission_asset", "commission_sats",
           "commission_btc", "kzt_value", "rate_kzt_per_btc", "rate_source", "payment_date",
           "payment_txid", "network_fee_sats")

LABELS: dict[str, tuple[str, str, str]] = {
    "no": ("Р/с №", "№ п/п", "No."),
    "kind": ("Операция түрі", "Вид операции", "Kind"),
    "iin_bin": ("ЖСН/БСН", "ИИН/БИН", "IIN/BIN"),
    "legal_name": ("Атауы", "Наименование", "Legal name"),
    "license_number": ("Лицензия нөмірі", "Номер лицензии", "License number"),
    "license_issued_on": ("Лицензия берілген күн", "Дата выдачи лицензии", "License issue date"),
    "payout_address": ("Төлем мекенжайы", "Адрес выплаты", "Payout address"),
    "distribution_date": ("Бөлу күні (UTC+5)", "Дата распределения (UTC+5)",
                          "Distribution date (UTC+5)"),
    "block_height": ("Блок биіктігі", "Высота блока", "Block height"),
    "block_hash": ("Блок хэші", "Хэш блока", "Block hash"),
    "asset": ("Актив", "Актив", "Asset"),
    "quantity_sats": ("Саны (сатоши)", "Количество (сатоши)", "Quantity (satoshis)"),
    "quantity_btc": ("Саны (BTC)", "Количество (BTC)", "Quantity (BTC)"),
    "commission_asset": ("Комиссия активі", "Актив комиссии", "Commission asset"),
    "commission_sats": ("Пул комиссиясы (сатоши)", "Комиссия пула (сатоши)",
                        "Pool commission (satoshis)"),
    "commission_btc": ("Пул комиссиясы (BTC)", "Комиссия пула (BTC)", "Pool commission (BTC)"),
    "kzt_value": ("Алған күнгі құны (теңге)", "Стоимость на дату получения (тенге)",
                  "Value on the date of receipt (KZT)"),
    "rate_kzt_per_btc": ("Бағам (теңге/BTC)", "Курс (тенге/BTC)", "Rate (KZT/BTC)"),
    "rate_source": ("Бағам көзі", "Источник курса", "Rate source"),
    "payment_date": ("Төлем күні (UTC+5)", "Дата выплаты (UTC+5)", "Payment date (UTC+5)"),
    "payment_txid": ("Төлем транзакциясы", "Транзакция выплаты", "Payment txid"),
    "network_fee_sats": ("Желі комиссиясы (сатоши)", "Комиссия сети (сатоши)",
                         "Network fee (satoshis)"),
}

KIND_TEXT = {EntryKind.CREDIT: "distribution", EntryKind.REVERSAL: "reversal",
             EntryKind.PAYMENT: "late_payment"}
_MONEY_KINDS = (EntryKind.CREDIT, EntryKind.REVERSAL)


def reconcile(miner_events: Iterable[MinerEvent], blocks: Iterable[BlockEvent]) -> dict[str, int]:
    """Miners' net + pool commission + pool remainder = matured rewards, exactly, per block
    and in total; ReportError naming the block otherwise."""
    per_block: dict[tuple[str, EntryKind], list[int]] = defaultdict(lambda: [0, 0])
    for e in miner_events:
        if e.kind not in _MONEY_KINDS:
            continue
        acc = per_block[(e.block_hash, e.kind)]
        acc[0] += e.net_sats
        acc[1] += e.fee_sats
    totals = {"matured_rewards_sats": 0, "miners_net_sats": 0, "pool_commission_sats": 0,
              "pool_remainder_sats": 0}
    block_keys = set()
    for b in blocks:
        net, fee = per_block.get((b.block_hash, b.kind), [0, 0])
        block_keys.add((b.block_hash, b.kind))
        if fee != b.pool_fee_sats or net + b.pool_fee_sats + b.pool_remainder_sats != b.reward_sats:
            raise ReportError(
                f"sums do not close for block {b.height} {b.block_hash} ({b.kind.value}): "
                f"miners' net {net} + commission {b.pool_fee_sats} (miners' lines: {fee}) + "
                f"remainder {b.pool_remainder_sats} != reward {b.reward_sats}")
        totals["matured_rewards_sats"] += b.reward_sats
        totals["miners_net_sats"] += net
        totals["pool_commission_sats"] += b.pool_fee_sats
        totals["pool_remainder_sats"] += b.pool_remainder_sats
    stray = sorted(set(per_block) - block_keys)
    if stray:
        raise ReportError(f"sums do not close: miner rows for blocks without a pool credit: "
                          f"{', '.join(h for h, _ in stray)}")
    return totals


def miners_income(period: Period, data: PeriodData, allow_missing_rates: bool = False,
                  progress: Progress | None = None, progress_rows: int = PROGRESS_ROWS
                  ) -> Table:
    """``progress`` (if given) is called after each miner's last row and after every
    ``progress_rows``-th row."""
    totals = reconcile(data.miner_events, data.block_events)
    check_rates((e.value_date for e in data.miner_events if e.kind in _MONEY_KINDS), data.rates,
                allow_missing_rates)
    unknown = sorted({e.account for e in data.miner_events} - set(data.miners))
    if unknown:
        raise ReportError(f"miners not in the register: {', '.join(unknown)}")

    def ident(e: MinerEvent) -> MinerIdentity:
        return data.miners[e.account]

    events = sorted(data.miner_events, key=lambda e: (ident(e).iin_bin, e.at, e.height,
                                                      e.block_hash, e.kind.value))
    rows = []
    per_miner: dict[str, list[object]] = {}
    missing_days: set[str] = set()
    total_kzt = None
    miners_total = len({ident(e).iin_bin for e in events})
    miners_done = 0
    for no, e in enumerate(events, start=1):
        m = ident(e)
        day = e.value_date
        rate = data.rates.get(day) if e.kind in _MONEY_KINDS else None
        kzt = kzt_value(e.net_sats, rate.kzt_per_btc) if rate else None
        if rate is None and e.kind in _MONEY_KINDS:
            missing_days.add(day.isoformat())
        rows.append(cells([
            no, KIND_TEXT[e.kind], m.iin_bin, m.legal_name, m.license_number,
            m.license_issued_on.isoformat() if m.license_issued_on else "", e.address,
            kz_text(e.at), e.height, e.block_hash, "BTC", e.net_sats, btc_text(e.net_sats),
            "BTC", e.fee_sats, btc_text(e.fee_sats), "" if kzt is None else f"{kzt:.2f}",
            "" if rate is None else str(rate.kzt_per_btc),
            rate.source if rate else (MISSING if e.kind in _MONEY_KINDS else ""),
            kz_text(e.payment_at), e.payment_txid, e.payment_fee_sats]))
        acc = per_miner.setdefault(m.iin_bin, [m.legal_name, 0, 0, 0, None])
        acc[1] = int(acc[1]) + 1  # type: ignore[call-overload]
        acc[2] = int(acc[2]) + e.net_sats  # type: ignore[call-overload]
        acc[3] = int(acc[3]) + e.fee_sats  # type: ignore[call-overload]
        if kzt is not None:
            acc[4] = kzt if acc[4] is None else acc[4] + kzt  # type: ignore[operator]
            total_kzt = kzt if total_kzt is None else total_kzt + kzt
        if progress is not None:
            last_of_miner = no == len(events) or ident(events[no]).iin_bin != m.iin_bin
            miners_done += last_of_miner
            if last_of_miner or no % progress_rows == 0:
                progress(no, len(events), miners_done, miners_total)
    miner_totals = tuple(
        (f"miner {iin}", (("iin_bin", iin), ("legal_name", str(v[0])), ("rows", str(v[1])),
                          ("quantity_sats", str(v[2])), ("quantity_btc", btc_text(int(v[2]))),  # type: ignore[call-overload]
                          ("commission_sats", str(v[3])),
                          ("kzt_value", "" if v[4] is None else f"{v[4]:.2f}")))
        for iin, v in sorted(per_miner.items()))
    report_total = ("report", (*((k, str(v)) for k, v in totals.items()),
                               ("miners_net_btc", btc_text(totals["miners_net_sats"])),
                               ("kzt_value", "" if total_kzt is None else f"{total_kzt:.2f}")))
    meta = (("report", "miners-income"), ("period_from", period.first.isoformat()),
            ("period_to", period.last.isoformat()), ("timezone", "UTC+5"),
            ("note", DISTRIBUTION_NOTE), ("rounding", ROUNDING_RULE),
            ("missing_rates", ",".join(sorted(missing_days))))
    return Table("miners-income", COLUMNS, tuple(rows), (*miner_totals, report_total), meta,
                 LABELS)
