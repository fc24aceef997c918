"""The per-miner statement: what one miner received in the period (distributions, reversals,
late payments), for its own tax filing and to show the share it must sell through
AIFC-licensed exchanges (Art. 8(4): at least 75%). The rows are the miner's rows of the
miners' incomes report (built, and reconciled, over the whole period first)."""

from __future__ import annotations

from reporting.miners import miners_income
from reporting.model import Period, PeriodData
from reporting.rates import btc_text
from reporting.table import Progress, ReportError, Table

ART_8_4_PERCENT = 75
ART_8_4_NOTE = ("Art. 8(4) of Law No. 193-VII: at least 75% of mined digital assets sold must "
                "be sold through exchanges licensed in the Astana International Financial "
                "Centre (AIFC). The received quantity above is the basis for that share.")

# The statement's totals in words (kk, ru, en) for the PDF; CSV/JSON/XML keep the keys. Keys of
# a miner's total that are report columns take the column's label (Table.labels).
TOTAL_LABELS: dict[str, tuple[str, str, str]] = {
    "miner": ("Майнер бойынша жиыны", "Итого по майнеру", "Miner total"),
    "art_8_4": ("№ 193-VII Заң, 8-бап 4-тармақ", "Закон № 193-VII, ст. 8 п. 4",
                "Law No. 193-VII, Art. 8(4)"),
    "rows": ("Жолдар саны", "Количество строк", "Rows"),
    "received_sats": ("Алынғаны (сатоши)", "Получено (сатоши)", "Received (satoshis)"),
    "received_btc": ("Алынғаны (BTC)", "Получено (BTC)", "Received (BTC)"),
    "minimum_share_percent": ("Ең төменгі үлес, %", "Минимальная доля, %", "Minimum share, %"),
    "minimum_via_licensed_exchanges_sats_if_all_sold": (
        "Барлығы сатылса, АХҚО лицензиясы бар биржалар арқылы кемінде (сатоши)",
        "При продаже всего: не менее через биржи с лицензией МФЦА (сатоши)",
        "If all is sold: at least via AIFC-licensed exchanges (satoshis)"),
    "minimum_via_licensed_exchanges_btc_if_all_sold": (
        "Барлығы сатылса, АХҚО лицензиясы бар биржалар арқылы кемінде (BTC)",
        "При продаже всего: не менее через биржи с лицензией МФЦА (BTC)",
        "If all is sold: at least via AIFC-licensed exchanges (BTC)"),
}


def miner_statement(period: Period, data: PeriodData, account: str,
                    allow_missing_rates: bool = False, progress: Progress | None = None
                    ) -> Table:
    if account not in data.miners:
        raise ReportError(f"--miner: {account!r} has no distribution in the period "
                          "(or is not registered)")
    full = miners_income(period, data, allow_missing_rates, progress)
    ident = data.miners[account]
    rows = [r for r in full.rows if r[2] == ident.iin_bin]
    rows = [(str(n), *r[1:]) for n, r in enumerate(rows, start=1)]
    (miner_total,) = [items for name, items in full.totals if name == f"miner {ident.iin_bin}"]
    received = int(dict(miner_total)["quantity_sats"])
    minimum = -(-received * ART_8_4_PERCENT // 100) if received > 0 else 0
    totals = (("miner", miner_total), ("art_8_4", (
        ("received_sats", str(received)), ("received_btc", btc_text(received)),
        ("minimum_share_percent", str(ART_8_4_PERCENT)),
        ("minimum_via_licensed_exchanges_sats_if_all_sold", str(minimum)),
        ("minimum_via_licensed_exchanges_btc_if_all_sold", btc_text(minimum)))))
    meta = (("report", "miner-statement"), ("account", account), ("iin_bin", ident.iin_bin),
            ("legal_name", ident.legal_name), ("license_number", ident.license_number),
            *((k, v) for k, v in full.meta if k != "report"), ("art_8_4", ART_8_4_NOTE))
    return Table("miner-statement", full.columns, tuple(tuple(r) for r in rows), totals, meta,
                 full.labels)
