"""The per-miner statement as PDF (fpdf2, DejaVu Sans embedded: every Kazakh letter
ә ғ қ ң ө ұ ү һ і). Deterministic: fixed creation date (the period's end), so the same
statement gives the same bytes."""

from __future__ import annotations

from datetime import datetime, time
from importlib import resources

from fpdf import FPDF, FontFace

from reporting.model import KZ
from reporting.rates import ROUNDING_RULE
from reporting.statement import ART_8_4_NOTE, TOTAL_LABELS
from reporting.table import DISTRIBUTION_NOTE, LANGS, Table

TITLE = {"kk": "Цифрлық активтерді бөлу туралы үзінді көшірме",
         "ru": "Выписка о распределении цифровых активов",
         "en": "Statement of distributed digital assets"}
WORDS = {
    "period": ("Кезең", "Период", "Period"),
    "miner": ("Цифрлық майнер", "Цифровой майнер", "Digital miner"),
    "license": ("Лицензия", "Лицензия", "License"),
    "totals": ("Жиыны", "Итого", "Totals"),
}
# The notes in the page's language (the signed CSV/JSON/XML carry the English text of meta);
# a note whose English text is not one of these is printed as it is.
NOTES: dict[str, tuple[str, str, str]] = {
    DISTRIBUTION_NOTE: (
        "Өндірілген цифрлық активтерді цифрлық майнерлер арасында бөлу, шығару немесе айналыс "
        "емес (Қазақстан Республикасының № 193-VII Заңы, 10-бап 4-тармақ)",
        "Распределение добытых цифровых активов между цифровыми майнерами, а не выпуск или "
        "обращение (Закон Республики Казахстан № 193-VII, ст. 10 п. 4)",
        DISTRIBUTION_NOTE),
    ROUNDING_RULE: (
        "Теңге = сатоши × бағам / 100000000, тиынға дейін дөңгелектенеді (0,01 теңге; 0,5 "
        "жоғары қарай); бағам: алған күнгі 1 BTC үшін теңге (Қазақстан уақыты, UTC+5)",
        "Тенге = сатоши × курс / 100000000, с округлением до тиына (0,01 тенге; 0,5 в большую "
        "сторону); курс: тенге за 1 BTC на дату получения (время Казахстана, UTC+5)",
        ROUNDING_RULE),
    ART_8_4_NOTE: (
        "№ 193-VII Заңның 8-бабының 4-тармағы: сатылған өндірілген цифрлық активтердің кемінде "
        "75%-ы «Астана» халықаралық қаржы орталығының (АХҚО) лицензиясы бар биржалар арқылы "
        "сатылуы тиіс. Жоғарыда көрсетілген алынған көлем осы үлестің негізі болып табылады.",
        "Закон № 193-VII, ст. 8 п. 4: не менее 75% проданных добытых цифровых активов "
        "продаются через биржи, имеющие лицензию Международного финансового центра «Астана» "
        "(МФЦА). Указанное выше полученное количество является базой для этой доли.",
        ART_8_4_NOTE),
}
# the rows' kind (reporting.miners.KIND_TEXT) on paper
KIND_WORDS = {"distribution": ("Бөлу", "Распределение", "distribution"),
              "reversal": ("Кері қайтару (орфан блок)", "Сторно (орфан-блок)",
                           "reversal (orphaned block)"),
              "late_payment": ("Кешіккен төлем", "Поздняя выплата", "late payment")}
# the statement's columns on paper (all are in the CSV/JSON/XML)
PDF_COLUMNS = (("no", 9), ("kind", 22), ("distribution_date", 32), ("block_height", 16),
               ("quantity_btc", 26), ("commission_btc", 24), ("kzt_value", 30),
               ("rate_kzt_per_btc", 28), ("payment_date", 32), ("payment_txid", 58))


def font_path() -> str:
    return str(resources.files("reporting.fonts").joinpath("DejaVuSans.ttf"))


def _word(key: str, table: Table, i: int) -> str:
    """A totals name or key in the page's language (KeyError for a key without words)."""
    return (TOTAL_LABELS.get(key) or table.labels[key])[i]


def _note(text: str, i: int) -> str:
    return NOTES[text][i] if text in NOTES else text


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
        _note(meta["note"], i), _note(meta["rounding"], i)]
    for line in lines:
        pdf.multi_cell(0, 5, line, align="L", new_x="LMARGIN", new_y="NEXT")
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
                value = r[index[col]]
                row.cell(KIND_WORDS[value][i] if col == "kind" and value in KIND_WORDS
                         else value)
    pdf.ln(3)
    pdf.set_font("DejaVu", size=9)
    pdf.multi_cell(0, 5, WORDS["totals"][i], new_x="LMARGIN", new_y="NEXT")
    for name, items in table.totals:
        text = "; ".join(f"{_word(k, table, i)}: {v}" for k, v in items
                         if k not in ("legal_name",))
        pdf.multi_cell(0, 5, f"{_word(name, table, i)}. {text}", align="L", new_x="LMARGIN",
                       new_y="NEXT")
    pdf.ln(2)
    pdf.multi_cell(0, 5, _note(meta["art_8_4"], i), align="L", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
