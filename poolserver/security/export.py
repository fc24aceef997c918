"""The security log for the accreditation file: CSV or JSON of a date range (pure rendering).

Dates are Kazakhstan calendar days (``--from 2026-12-01 --to 2026-12-01`` is that one day,
00:00-24:00 UTC+5); times are printed in both UTC+5 and UTC. Each row carries its chain fields
(``seq``, ``prev_hash``, ``hash``) so a reader can check the rows against ``security-log verify``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from poolserver.register.chain import AuditEntry, format_time
from poolserver.register.timeutil import KZ, kz_midnight

COLUMNS = ["seq", "time_kz", "time_utc", "kind", "who", "subject", "fields", "prev_hash", "hash"]


def day_range(first: date, last: date) -> tuple[datetime, datetime]:
    """UTC instants [start, end) of the Kazakhstan days ``first`` .. ``last`` inclusive."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    return kz_midnight(first), kz_midnight(last + timedelta(days=1))


def _row(e: AuditEntry) -> dict[str, object]:
    return {
        "seq": e.seq,
        "time_kz": e.at.astimezone(KZ).strftime("%Y-%m-%d %H:%M:%S.%f+05:00"),
        "time_utc": format_time(e.at),
        "kind": e.action,
        "who": e.who,
        "subject": e.subject,
        "fields": e.new,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


def to_csv(entries: Sequence[AuditEntry]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\r\n")
    w.writeheader()
    for e in entries:
        w.writerow(_row(e))
    return buf.getvalue()


def to_json(entries: Sequence[AuditEntry], first: date, last: date) -> str:
    rows = []
    for e in entries:
        row = _row(e)
        row["fields"] = json.loads(e.new)
        rows.append(row)
    doc = {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "timezone": "UTC+5",
        "count": len(rows),
        "events": rows,
    }
    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=False) + "\n"
