"""The per-miner statement as PDF (fpdf2, DejaVu Sans embedded: every Kazakh letter
ә ғ қ ң ө ұ ү һ і). Deterministic: fixed creation date (the period's end), so the same
statement gives the same bytes."""

from __future__ import annotations

from datetime import datetime, time
from importlib import resources

from fpdf import FPDF, FontFace

from reporting.model import KZ
from reporting.table import LANGS, Table

TITLE = {"kk": "Цифрлық активтерді бөлу туралы үзінді көшірме",
         "ru": "Выписка о распределении цифровых активов",
         "en": "Statement of distributed digital assets"}
WORDS = {
    "period": ("Кезең", "Период", "Period"),
    "miner": ("Цифрлық майнер", "Цифровой майнер", "Digital miner"),
    "license": ("Лицензия", "Лицензия", "License"),
    "totals": ("Жиыны", "Итого", "Totals"),
}
# the statement's columns on paper (all are in the CSV/JSON/XML)
PDF_COLUMNS = (("no", 9), ("kind", 22), ("distribution_date", 32), ("block_height", 16),
               ("quantity_btc", 26), ("commission_btc", 24), ("kzt_value", 30),
               ("rate_kzt_per_btc", 28), ("payment_date", 32), ("payment_txid", 58))


def font_path() -> str:
    return str(resources.files("reporting.fonts").joinpath("DejaVuSans.ttf"))


def statement_pdf(table: Table, lang: str) -> bytes:
    i = LANGS.index(lang)
    meta = dict(table.meta)
    pdf = FPDF(orientation="L", unit="mm", format="A4")
    end = datetime.combine(datetime.fromisoformat(meta["period_to"]).date(), time(23, 59, 59),
                           tzinfo=KZ)
    pdf.set_creation_date(end)
    pdf.set_title(TITLE[lang])
    pdf.set_author("qazpool")
    pdf.set_creator("qazpool")
    pdf.add_font("DejaVu", "", font_path())
    pdf.set_auto_page_break(True, margin=12)
    pdf.add_page()
    pdf.set_font("DejaVu", size=14)
    pdf.multi_cell(0, 8, TITLE[lang], new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", size=9)
    lines = [
        f"{WORDS['miner'][i]}: {meta['legal_name']} ({meta['iin_bin']})",
        f"{WORDS['license'][i]}: {meta['license_number']}",
        f"{WORDS['period'][i]}: {meta['period_from']} .. {meta['period_to']} (UTC+5)",
        meta["note"], meta["rounding"]]
    for line in lines:
        pdf.multi_cell(0, 5, line, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    labels = dict(zip(table.columns, table.header(lang), strict=True))
    index = {c: n for n, c in enumerate(table.columns)}
    pdf.set_font("DejaVu", size=6.5)
    with pdf.table(col_widths=tuple(w for _, w in PDF_COLUMNS), text_align="LEFT",
                   line_height=3.6,
                   headings_style=FontFace(emphasis="", fill_color=(225, 230, 240))) as t:
        head = t.row()
        for col, _ in PDF_COLUMNS:
            head.cell(labels[col])
        for r in table.rows:
            row = t.row()
            for col, _ in PDF_COLUMNS:
                row.cell(r[index[col]])
    pdf.ln(3)
    pdf.set_font("DejaVu", size=9)
    pdf.multi_cell(0, 5, WORDS["totals"][i], new_x="LMARGIN", new_y="NEXT")
    for name, items in table.totals:
        text = "; ".join(f"{k} = {v}" for k, v in items if k not in ("legal_name",))
        pdf.multi_cell(0, 5, f"{name}: {text}", align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.multi_cell(0, 5, meta["art_8_4"], align="L", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
