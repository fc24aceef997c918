"""CSV (UTF-8 with BOM, CRLF: opens in Excel with Cyrillic intact), JSON and XML renderings of a
``Table``. Pure and deterministic: the same table gives the same bytes (fixed order, no
generation time)."""

from __future__ import annotations

import csv
import io
import json
from importlib import resources
from xml.etree import ElementTree as ET

from reporting.table import ReportError, Table

FORMATS = ("csv", "json", "xml")


def render(table: Table, fmt: str, lang: str) -> bytes:
    if fmt == "csv":
        return to_csv(table, lang)
    if fmt == "json":
        return to_json(table, lang)
    if fmt == "xml":
        return to_xml(table, lang)
    raise ReportError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")


def to_csv(table: Table, lang: str) -> bytes:
    """The header row, the rows; then a blank line and the totals and notes as
    ``name;key;value`` lines (three cells) so the data block stays a clean table."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(table.header(lang))
    w.writerows(table.rows)
    w.writerow([])
    for name, items in table.totals:
        for key, value in items:
            w.writerow(["total", name, key, value])
    for key, value in table.meta:
        w.writerow(["meta", key, value])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_json(table: Table, lang: str) -> bytes:
    doc = {
        "report": table.kind,
        "meta": dict(table.meta),
        "columns": [{"key": k, "label": lab} for k, lab in
                    zip(table.columns, table.header(lang), strict=True)],
        "rows": [dict(zip(table.columns, r, strict=True)) for r in table.rows],
        "totals": [{"name": n, **dict(items)} for n, items in table.totals],
    }
    return (json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=False) + "\n").encode()


def to_xml(table: Table, lang: str) -> bytes:
    root = ET.Element("report", {"kind": table.kind, "lang": lang})
    meta = ET.SubElement(root, "meta")
    for key, value in table.meta:
        ET.SubElement(meta, "item", {"key": key}).text = value
    cols = ET.SubElement(root, "columns")
    for key, label in zip(table.columns, table.header(lang), strict=True):
        ET.SubElement(cols, "column", {"key": key}).text = label
    rows = ET.SubElement(root, "rows")
    for r in table.rows:
        row = ET.SubElement(rows, "row")
        for key, value in zip(table.columns, r, strict=True):
            ET.SubElement(row, key).text = value
    totals = ET.SubElement(root, "totals")
    for name, items in table.totals:
        t = ET.SubElement(totals, "total", {"name": name})
        for key, value in items:
            ET.SubElement(t, "item", {"key": key}).text = value
    ET.indent(root)
    body = ET.tostring(root, "utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body + b"\n"


def schema_text(kind: str) -> bytes:
    """The XSD shipped in the package that every generated XML of ``kind`` validates against."""
    return resources.files("reporting.schema").joinpath(f"{kind}.xsd").read_bytes()
