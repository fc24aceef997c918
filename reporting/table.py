"""A report as a table of text cells: what every format renders (pure, deterministic)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

LANGS = ("kk", "ru", "en")
DISTRIBUTION_NOTE = ("Distribution of mined digital assets among miners, not issuance or "
                     "circulation (Law of the Republic of Kazakhstan No. 193-VII, Art. 10(4))")

# A long build reports how far it is: (rows done, rows total, miners done, miners total). Called
# after each miner's last row and after every PROGRESS_ROWS-th row (I/O stays with the caller).
Progress = Callable[[int, int, int, int], None]
PROGRESS_ROWS = 1000


class ReportError(ValueError):
    """The report cannot be written (sums do not close, bad arguments)."""


@dataclass(frozen=True, slots=True)
class Table:
    kind: str  # "miners-income" | "pool-commission" | ...
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    totals: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # (name, ((key, value), ...))
    meta: tuple[tuple[str, str], ...]  # period, rounding rule, note, missing rates, ...
    labels: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)

    def header(self, lang: str) -> list[str]:
        if lang not in LANGS:
            raise ReportError(f"--lang: {lang!r} is not one of {', '.join(LANGS)}")
        i = LANGS.index(lang)
        return [self.labels[c][i] if c in self.labels else c for c in self.columns]


def cells(values: Sequence[object]) -> tuple[str, ...]:
    return tuple("" if v is None else str(v) for v in values)
