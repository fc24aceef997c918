"""The test protocol: one JSON document (machine-readable) and, per language, HTML and PDF
(summary table, per-case details, environment, software version and tree hash, times in
Kazakhstan time), signed with the tester's Ed25519 key by ``reporting.signing`` (the same
manifest + detached signature as the income reports)."""

from __future__ import annotations

import getpass
import hashlib
import html
import json
import os
import platform
import socket
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from poolserver import __version__
from poolserver.security_suite.model import NOT_APPLICABLE, VERDICT_ORDER, Result
from reporting.model import KZ

PACKAGES = ("poolserver", "stratum", "payouts", "reporting", "firmware_probe")
SOURCE_SUFFIXES = (".py", ".c", ".h", ".xsd", ".ini", ".mako")

WORDS: dict[str, dict[str, str]] = {
    "title": {"kk": "Ақпараттық қауіпсіздік талаптарына сәйкестікті сынау хаттамасы",
              "ru": "Протокол испытаний на соответствие требованиям информационной "
                    "безопасности"},
    "subtitle": {"kk": "Цифрлық майнинг пулы qazpool (№ 193-VII Заң, 10-бап 2-тармақ)",
                 "ru": "Пул цифрового майнинга qazpool (Закон № 193-VII, ст. 10 п. 2)"},
    "summary": {"kk": "Қорытынды", "ru": "Сводка"},
    "details": {"kk": "Әр сынақ бойынша мәліметтер", "ru": "Подробности по каждому испытанию"},
    "environment": {"kk": "Орта", "ru": "Среда"},
    "software": {"kk": "Бағдарламалық қамтамасыз ету", "ru": "Программное обеспечение"},
    "run": {"kk": "Сынақ", "ru": "Испытание"},
    "tester": {"kk": "Сынаушы (пайдаланушы, хост)", "ru": "Испытатель (пользователь, хост)"},
    "target": {"kk": "Нысана", "ru": "Объект испытаний"},
    "started": {"kk": "Басталды (Қазақстан уақыты, UTC+5)",
                "ru": "Начало (время Казахстана, UTC+5)"},
    "finished": {"kk": "Аяқталды (Қазақстан уақыты, UTC+5)",
                 "ru": "Окончание (время Казахстана, UTC+5)"},
    "version": {"kk": "Нұсқа", "ru": "Версия"},
    "tree_hash": {"kk": "Орнатылған пакеттің SHA-256 хэші", "ru": "SHA-256 установленного пакета"},
    "id": {"kk": "№", "ru": "№"},
    "family": {"kk": "Топ", "ru": "Группа"},
    "case": {"kk": "Сынақ", "ru": "Испытание"},
    "verdict": {"kk": "Нәтиже", "ru": "Результат"},
    "sends": {"kk": "Не жіберіледі", "ru": "Что отправляется"},
    "expected": {"kk": "Күтілетін қауіпсіз мінез-құлық", "ru": "Ожидаемое безопасное поведение"},
    "observation": {"kk": "Байқалғаны", "ru": "Наблюдение"},
    "total": {"kk": "Барлығы", "ru": "Всего"},
    "honest": {"kk": "Адал анықтамалық майнерлер", "ru": "Честные эталонные майнеры"},
    "note": {"kk": "Сынақтардың сипаттамалары мен бақылаулары техникалық ағылшын тілінде "
                   "берілген (JSON құжатымен бірдей).",
             "ru": "Описания испытаний и наблюдения приведены на техническом английском языке "
                   "(как в JSON-документе)."},
}
VERDICTS = {"held": {"kk": "ӨТТІ", "ru": "ПРОЙДЕНО"},
            "failed": {"kk": "ӨТПЕДІ", "ru": "НЕ ПРОЙДЕНО"},
            "error": {"kk": "ҚАТЕ", "ru": "ОШИБКА"},
            "not applicable": {"kk": "ҚОЛДАНЫЛМАЙДЫ", "ru": "НЕ ПРИМЕНИМО"}}
FAMILIES = {"framing": {"kk": "Кадрлау", "ru": "Кадрирование"},
            "protocol_abuse": {"kk": "Хаттаманы теріс пайдалану",
                               "ru": "Злоупотребление протоколом"},
            "exhaustion": {"kk": "Ресурстарды сарқу", "ru": "Исчерпание ресурсов"},
            "credit": {"kk": "Есептеу алаяқтығы", "ru": "Мошенничество с начислениями"},
            "identity": {"kk": "Сәйкестендіру", "ru": "Идентификация"},
            "control": {"kk": "Басқару беттері", "ru": "Управляющие интерфейсы"},
            "web": {"kk": "Веб-бет және API", "ru": "Веб-страница и API"}}
LANGS = ("kk", "ru")


def kz_time(dt: datetime) -> str:
    return dt.astimezone(KZ).strftime("%Y-%m-%d %H:%M:%S UTC+5")


def tree_hash(packages: Iterable[str] = PACKAGES) -> tuple[str, int]:
    """SHA-256 over the installed source files of the packages (relative path, then the file's
    SHA-256, sorted), and how many files it covers."""
    import importlib

    entries = []
    for name in packages:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        root = Path(mod.__file__ or "").parent
        for path in root.rglob("*"):
            if path.is_file() and path.suffix in SOURCE_SUFFIXES and "__pycache__" not in \
                    path.parts:
                rel = f"{name}/{path.relative_to(root).as_posix()}"
                entries.append(f"{rel}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n")
    entries.sort()
    return hashlib.sha256("".join(entries).encode()).hexdigest(), len(entries)


def who_ran() -> dict[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"user": user, "host": socket.gethostname()}


def environment() -> dict[str, Any]:
    from stratum import hashcore

    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "machine": platform.machine(), "cpus": os.cpu_count() or 0,
            "hash_core": hashcore.backend()}  # fmt: skip


def document(run: dict[str, Any], results: list[Result], notes: list[str]) -> dict[str, Any]:
    digest, files = tree_hash()
    counts = {v: sum(1 for r in results if r.verdict == v) for v in VERDICT_ORDER}
    return {
        "protocol": "qazpool security suite test protocol",
        "law": "Law of the Republic of Kazakhstan No. 193-VII, Art. 10(2)",
        "run": run,
        "environment": environment(),
        "software": {"name": "qazpool", "version": __version__, "tree_sha256": digest,
                     "tree_files": files, "packages": list(PACKAGES)},
        "notes": notes,
        # "all_held": every case that applies to this pool held (the not-applicable ones are
        # counted and named apart; they never count as held)
        "summary": {"total": len(results), **counts,
                    "all_held": counts["held"] + counts[NOT_APPLICABLE] == len(results)
                    and counts["held"] > 0},
        "cases": [r.as_json() for r in results],
    }


def _w(key: str, lang: str) -> str:
    return WORDS[key][lang]


def _verdict(v: str, lang: str) -> str:
    return VERDICTS.get(v, {}).get(lang, v)


def _family(f: str, lang: str) -> str:
    return FAMILIES.get(f, {}).get(lang, f)


def _header_rows(doc: dict[str, Any], lang: str) -> list[tuple[str, str]]:
    run, sw = doc["run"], doc["software"]
    env = doc["environment"]
    return [
        (_w("tester", lang), f"{run['user']}@{run['host']}"),
        (_w("target", lang), f"{run['target']} (pid {run['pid']}, config {run['config']})"),
        (_w("started", lang), run["started_kz"]),
        (_w("finished", lang), run["finished_kz"]),
        (_w("version", lang), f"qazpool {sw['version']}"),
        (_w("tree_hash", lang), f"{sw['tree_sha256']} ({sw['tree_files']} files)"),
        (_w("environment", lang), f"Python {env['python']}, {env['platform']}, "
                                  f"{env['cpus']} CPU, hash core {env['hash_core']}"),
        (_w("honest", lang), "; ".join(doc["notes"])),
        (_w("total", lang), " / ".join(f"{_verdict(k, lang)}: {doc['summary'][k]}"
                                       for k in VERDICT_ORDER)),
    ]


def render_html(doc: dict[str, Any], lang: str) -> bytes:
    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _header_rows(doc, lang))
    summary = "".join(
        f"<tr class='{e(c['verdict'])}'><td>{e(c['id'])}</td>"
        f"<td>{e(_family(c['family'], lang))}</td><td>{e(c['title'])}</td>"
        f"<td>{e(_verdict(c['verdict'], lang))}</td></tr>" for c in doc["cases"])
    details = "".join(
        f"<section id='{e(c['id'])}'><h3>{e(c['id'])} {e(c['title'])} — "
        f"{e(_verdict(c['verdict'], lang))}</h3><dl>"
        f"<dt>{e(_w('sends', lang))}</dt><dd>{e(c['sends'])}</dd>"
        f"<dt>{e(_w('expected', lang))}</dt><dd>{e(c['expected'])}</dd>"
        f"<dt>{e(_w('observation', lang))}</dt><dd><ul>"
        + "".join(f"<li>{e(o)}</li>" for o in c["observation"]) + "</ul></dd></dl></section>"
        for c in doc["cases"])
    page = f"""<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{e(_w('title', lang))}</title>
<style>body{{font-family:'DejaVu Sans',sans-serif;margin:2em;max-width:70em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #aab;padding:2px 6px;text-align:left;
vertical-align:top}}tr.failed td,tr.error td{{background:#fdd}}tr.held td:last-child{{color:#060}}
</style></head><body>
<h1>{e(_w('title', lang))}</h1><p>{e(_w('subtitle', lang))}</p>
<h2>{e(_w('run', lang))}</h2><table>{rows}</table>
<h2>{e(_w('summary', lang))}</h2>
<table><tr><th>{e(_w('id', lang))}</th><th>{e(_w('family', lang))}</th>
<th>{e(_w('case', lang))}</th><th>{e(_w('verdict', lang))}</th></tr>{summary}</table>
<h2>{e(_w('details', lang))}</h2><p>{e(_w('note', lang))}</p>{details}
</body></html>
"""
    return page.encode()


def render_pdf(doc: dict[str, Any], lang: str) -> bytes:
    from fpdf import FPDF, FontFace

    from reporting.pdf import font_path

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_creation_date(datetime.fromisoformat(doc["run"]["finished_utc"]))
    pdf.set_title(_w("title", lang))
    pdf.set_author(f"{doc['run']['user']}@{doc['run']['host']}")
    pdf.set_creator("qazpool security suite")
    pdf.add_font("DejaVu", "", font_path())
    pdf.set_auto_page_break(True, margin=12)
    pdf.add_page()
    pdf.set_font("DejaVu", size=13)
    pdf.multi_cell(0, 7, _w("title", lang), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", size=9)
    pdf.multi_cell(0, 5, _w("subtitle", lang), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("DejaVu", size=7.5)
    with pdf.table(col_widths=(45, 145), text_align="LEFT", line_height=4,
                   first_row_as_headings=False) as t:  # fmt: skip
        for k, v in _header_rows(doc, lang):
            row = t.row()
            row.cell(k)
            row.cell(_printable(v))
    pdf.ln(3)
    pdf.set_font("DejaVu", size=11)
    pdf.multi_cell(0, 6, _w("summary", lang), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", size=7)
    head = FontFace(emphasis="", fill_color=(225, 230, 240))
    with pdf.table(col_widths=(14, 38, 110, 28), text_align="LEFT", line_height=3.6,
                   headings_style=head) as t:  # fmt: skip
        h = t.row()
        for k in ("id", "family", "case", "verdict"):
            h.cell(_w(k, lang))
        for c in doc["cases"]:
            row = t.row()
            row.cell(c["id"])
            row.cell(_family(c["family"], lang))
            row.cell(_printable(c["title"]))
            row.cell(_verdict(c["verdict"], lang))
    pdf.add_page()
    pdf.set_font("DejaVu", size=11)
    pdf.multi_cell(0, 6, _w("details", lang), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", size=7)
    pdf.multi_cell(0, 4, _w("note", lang), new_x="LMARGIN", new_y="NEXT")
    for c in doc["cases"]:
        pdf.ln(1.5)
        pdf.set_font("DejaVu", size=8.5)
        pdf.multi_cell(0, 4.5, _printable(f"{c['id']} {c['title']} — "
                                          f"{_verdict(c['verdict'], lang)}"),
                       new_x="LMARGIN", new_y="NEXT")  # fmt: skip
        pdf.set_font("DejaVu", size=7)
        for key in ("sends", "expected"):
            pdf.multi_cell(0, 3.6, _printable(f"{_w(key, lang)}: {c[key]}"), new_x="LMARGIN",
                           new_y="NEXT")  # fmt: skip
        pdf.multi_cell(0, 3.6, f"{_w('observation', lang)}:", new_x="LMARGIN", new_y="NEXT")
        for o in c["observation"]:
            pdf.multi_cell(0, 3.6, f"  • {_printable(o)}", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _printable(text: str) -> str:
    """Observations may quote what the attacker sent: control characters shown escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode()
                   for ch in text)  # fmt: skip


def protocol_files(doc: dict[str, Any], langs: Iterable[str]) -> dict[str, bytes]:
    files = {"protocol.json": (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode()}
    for lang in langs:
        files[f"protocol_{lang}.html"] = render_html(doc, lang)
        files[f"protocol_{lang}.pdf"] = render_pdf(doc, lang)
    return files


def write_protocol(out_dir: Path, doc: dict[str, Any], langs: list[str],
                   private_key: Any) -> list[Path]:  # fmt: skip
    from reporting.signing import write_signed

    files = protocol_files(doc, langs)
    s = doc["summary"]
    params = {"report": "security-suite-protocol", "target": doc["run"]["target"],
              "started_utc": doc["run"]["started_utc"], "tester": f"{doc['run']['user']}@"
              f"{doc['run']['host']}", "software": f"qazpool {__version__}",
              "tree_sha256": doc["software"]["tree_sha256"],
              "result": f"{s['held']}/{s['total']} held, "
              f"{s[NOT_APPLICABLE]} not applicable"}  # fmt: skip
    return write_signed(out_dir, files, params, private_key)
