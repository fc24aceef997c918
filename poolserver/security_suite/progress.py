"""The progress display while the suite runs: a rich live panel on a terminal (cases done, the
current case, verdicts so far), one plain line per case otherwise."""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any, TextIO

from poolserver.security_suite.model import Case, Result


class PlainProgress:
    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.verdicts: Counter[str] = Counter()

    def __call__(self, event: str, case: Case | None, result: Result | None, done: int,
                 total: int) -> None:  # fmt: skip
        if event == "start" and case is not None:
            print(f"security-suite: [{done + 1}/{total}] {case.id} {case.title} ...",
                  file=self.out, flush=True)  # fmt: skip
        elif event == "done" and result is not None:
            self.verdicts[result.verdict] += 1
            so_far = ", ".join(f"{v} {n}" for v, n in sorted(self.verdicts.items()))
            print(f"security-suite: [{done}/{total}] {result.case.id} {result.verdict.upper()} "
                  f"({result.seconds:.1f} s; so far: {so_far})", file=self.out, flush=True)
            if result.verdict != "held":
                for fact in result.observation:
                    if not fact.startswith("OK: "):
                        print(f"    {fact}", file=self.out, flush=True)

    def close(self) -> None:
        pass


class RichProgress(PlainProgress):
    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__(out)
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=self.out)
        self.current = ""
        self.done = 0
        self.total = 0
        self.failed: list[str] = []
        self.live = Live(self._render(), console=self.console, refresh_per_second=4,
                         transient=False)  # fmt: skip
        self.live.start()

    def _render(self) -> Any:
        from rich.table import Table

        t = Table.grid(padding=(0, 2))
        t.add_row("cases", f"{self.done}/{self.total}")
        t.add_row("current", self.current or "-")
        t.add_row("verdicts", ", ".join(f"{v} {n}" for v, n in sorted(self.verdicts.items()))
                  or "-")  # fmt: skip
        if self.failed:
            t.add_row("not held", ", ".join(self.failed[-12:]))
        return t

    def __call__(self, event: str, case: Case | None, result: Result | None, done: int,
                 total: int) -> None:  # fmt: skip
        self.total = total
        if event == "start" and case is not None:
            self.current = f"{case.id} {case.title}"
        elif event == "done" and result is not None:
            self.done = done
            self.verdicts[result.verdict] += 1
            if result.verdict != "held":
                self.failed.append(result.case.id)
        self.live.update(self._render())

    def close(self) -> None:
        self.current = ""
        self.live.update(self._render())
        self.live.stop()


def make_progress(out: TextIO | None = None) -> PlainProgress:
    stream = out or sys.stderr
    if stream.isatty():
        try:
            return RichProgress(stream)
        except ImportError:  # pragma: no cover - rich is a dependency
            pass
    return PlainProgress(stream)
