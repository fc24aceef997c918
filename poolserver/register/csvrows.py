"""CSV import rows for the registers, parsed with per-row errors (row, field, reason).

``row`` is the line number in the file as a spreadsheet shows it (the header is row 1). Each row
is checked on its own: one bad row does not hide the errors of another, and every error of a
row is reported, not just the first. Unknown or missing columns are errors of row 1.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Generic, TypeVar

from poolserver.register.address import validate_address
from poolserver.register.errors import RegisterError
from poolserver.register.hardware import parse_hashrate, validate_serial
from poolserver.register.history import parse_fee_percent
from poolserver.register.iin import validate_iin_bin
from poolserver.register.licensing import Subtype, parse_subtype
from poolserver.register.names import validate_account
from poolserver.register.text import TEXT_MAX, text_field
from poolserver.register.timeutil import parse_date

R = TypeVar("R")
MAX_ROWS = 100_000


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, {self.field}: {self.reason}"


@dataclass(frozen=True, slots=True)
class MinerRow:
    account: str
    legal_name: str
    iin_bin: str
    contact: str
    payout_address: str | None
    fee_bps: int | None


@dataclass(frozen=True, slots=True)
class LicenseRow:
    account: str
    number: str
    issued_on: date
    subtype: Subtype
    expires_on: date | None


@dataclass(frozen=True, slots=True)
class HardwareRow:
    serial: str
    manufacturer: str
    model: str
    rated_hashrate: int
    power_w: int
    account: str
    data_centre: str
    registry_number: str
    registry_date: date | None


def text(value: str, field: str, required: bool = True, max_len: int = TEXT_MAX) -> str:
    return text_field(value, field, max_len=max_len, required=required)


def positive_int(value: str, field: str) -> int:
    v = value.strip()
    if not v.isascii() or not v.isdigit() or int(v) <= 0 or len(v) > 12:
        raise RegisterError(field, f"must be a positive whole number, got {v[:20]!r}")
    return int(v)


@dataclass(frozen=True)
class Schema(Generic[R]):
    """Columns of one import file: name -> (parser, required); ``build`` makes the row."""

    name: str
    columns: dict[str, tuple[Callable[[str, str], Any], bool]]
    build: Callable[..., R]
    key: str  # the column that must be unique within a file


def _optional(parse: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    return lambda v, f: parse(v, f) if v.strip() else None


def miner_schema(network: str) -> Schema[MinerRow]:
    return Schema(
        "miners",
        {
            "account": (lambda v, f: validate_account(v.strip(), f), True),
            "legal_name": (text, True),
            "iin_bin": (validate_iin_bin, True),
            "contact": (lambda v, f: text(v, f, required=False), False),
            "payout_address": (_optional(lambda v, f: validate_address(v, network, f)), False),
            "fee_percent": (_optional(parse_fee_percent), False),
        },
        lambda fee_percent=None, contact="", payout_address=None, **kw: MinerRow(
            contact=contact or "", payout_address=payout_address, fee_bps=fee_percent, **kw
        ),
        "account",
    )


LICENSE_SCHEMA: Schema[LicenseRow] = Schema(
    "licenses",
    {
        "account": (lambda v, f: validate_account(v.strip(), f), True),
        "number": (lambda v, f: text(v, f, max_len=64), True),
        "issued_on": (parse_date, True),
        "subtype": (parse_subtype, True),
        "expires_on": (_optional(parse_date), False),
    },
    lambda expires_on=None, **kw: LicenseRow(expires_on=expires_on, **kw),
    "number",
)

HARDWARE_SCHEMA: Schema[HardwareRow] = Schema(
    "hardware",
    {
        "serial": (validate_serial, True),
        "manufacturer": (text, True),
        "model": (text, True),
        "rated_hashrate": (parse_hashrate, True),
        "power_w": (positive_int, True),
        "account": (lambda v, f: validate_account(v.strip(), f), True),
        "data_centre": (text, True),
        "registry_number": (lambda v, f: text(v, f, required=False, max_len=64), False),
        "registry_date": (_optional(parse_date), False),
    },
    lambda registry_number="", registry_date=None, **kw: HardwareRow(
        registry_number=registry_number or "", registry_date=registry_date, **kw
    ),
    "serial",
)


@dataclass(frozen=True, slots=True)
class Parsed(Generic[R]):
    rows: list[tuple[int, R]]  # (row number, parsed row)
    errors: list[RowError]


def parse_csv(data: str, schema: Schema[R]) -> Parsed[R]:
    """Parse ``data`` (the file's text) against ``schema``; good rows and per-row errors."""
    reader = csv.reader(io.StringIO(data.lstrip("\ufeff"), newline=""))
    rows: list[tuple[int, R]] = []
    errors: list[RowError] = []
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        return Parsed([], [RowError(1, "header", "the file is empty")])
    except csv.Error as exc:
        return Parsed([], [RowError(1, "header", f"not valid CSV: {exc}")])
    unknown = [h for h in header if h not in schema.columns]
    missing = [c for c, (_, req) in schema.columns.items() if req and c not in header]
    dupes = sorted({h for h in header if header.count(h) > 1})
    for h in unknown:
        errors.append(
            RowError(1, h or "(blank)", f"unknown column (known: {', '.join(schema.columns)})")
        )
    for c in missing:
        errors.append(RowError(1, c, "required column is missing"))
    for h in dupes:
        errors.append(RowError(1, h, "column appears more than once"))
    if errors:
        return Parsed([], errors)
    seen: dict[Any, int] = {}
    line = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(reader.line_num, "row", f"not valid CSV: {exc}"))
            break
        line += 1
        if not any(cell.strip() for cell in record):
            continue  # blank line
        if line > MAX_ROWS:
            errors.append(RowError(line, "row", f"more than {MAX_ROWS} rows; split the file"))
            break
        if len(record) != len(header):
            errors.append(
                RowError(line, "row", f"{len(record)} cells, the header has {len(header)}")
            )
            continue
        values: dict[str, Any] = {}
        row_errors: list[RowError] = []
        for name, cell in zip(header, record, strict=True):
            parse, required = schema.columns[name]
            if required and not cell.strip():
                row_errors.append(RowError(line, name, "must not be empty"))
                continue
            try:
                values[name] = parse(cell, name)
            except RegisterError as exc:
                row_errors.append(RowError(line, exc.field, exc.reason))
        if not row_errors:
            key = values[schema.key]
            if key in seen:
                row_errors.append(
                    RowError(line, schema.key, f"duplicate of row {seen[key]} in this file")
                )
            else:
                seen[key] = line
        if row_errors:
            errors.extend(row_errors)
        else:
            rows.append((line, schema.build(**values)))
    return Parsed(rows, errors)


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet would run a cell starting with = + @ as a formula (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "@", "\t", "\r") else text


def to_csv(header: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()
