"""The case registry: what a case is, what it observed, and the verdict.

A case family is one module in ``poolserver.security_suite.families`` with a ``CASES`` list;
``all_cases()`` finds every module there, so a new family (the web API's, when it lands) is one
more module and the runner does not change.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from poolserver.security_suite.context import Context

HELD = "held"
FAILED = "failed"
ERROR = "error"  # the case itself could not run (the tester's side); counts as not held
# The surface the case attacks is switched off in the operator's config (e.g. [web] disabled):
# stated in the protocol with the reason, never counted as held.
NOT_APPLICABLE = "not applicable"
VERDICT_ORDER = (HELD, FAILED, ERROR, NOT_APPLICABLE)


@dataclass
class Observation:
    """What a case saw. ``held`` is the case's own verdict on its observed facts; the runner
    adds the checks common to every case (server answering, RSS, honest miners, journal)."""

    held: bool
    facts: list[str] = field(default_factory=list)
    credited_allowed: int = 0  # shares of the attacker's the case itself got accepted
    not_applicable: str = ""  # why the attacked surface does not exist in this config

    def not_applicable_because(self, reason: str) -> None:
        self.not_applicable = reason
        self.facts.append(f"NOT APPLICABLE: {reason}")

    def fact(self, text: str) -> None:
        self.facts.append(text)

    def require(self, ok: bool, text: str) -> bool:
        """Record ``text`` as an observed fact; a false ``ok`` fails the case."""
        self.facts.append(("OK: " if ok else "NOT HELD: ") + text)
        if not ok:
            self.held = False
        return ok


CaseBody = Callable[["Context", Observation], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    id: str
    family: str
    title: str
    sends: str
    expected: str
    body: CaseBody
    quick: bool = False  # part of the quick subset (--quick, the default test run)


@dataclass
class Result:
    case: Case
    verdict: str
    observation: list[str]
    started_utc: str
    seconds: float
    checks: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        c = self.case
        return {"id": c.id, "family": c.family, "title": c.title, "sends": c.sends,
                "expected": c.expected, "verdict": self.verdict,
                "observation": self.observation, "started_utc": self.started_utc,
                "seconds": round(self.seconds, 3), "checks": self.checks}  # fmt: skip


def family(name: str) -> Callable[..., Callable[[CaseBody], CaseBody]]:
    """``case = family("framing")`` in a family module, then ``@case("FR-01", ...)``; the
    decorated bodies are collected in the module's ``CASES``."""
    cases: list[Case] = []

    def case(case_id: str, title: str, *, sends: str, expected: str,
             quick: bool = False) -> Callable[[CaseBody], CaseBody]:  # fmt: skip
        def add(body: CaseBody) -> CaseBody:
            cases.append(Case(case_id, name, title, sends, expected, body, quick))
            return body

        return add

    case.cases = cases  # type: ignore[attr-defined]
    return case


def all_cases() -> list[Case]:
    """Every case of every family module, in family-module then declaration order."""
    from poolserver.security_suite import families

    found: list[Case] = []
    order = getattr(families, "ORDER", ())
    names = sorted((m.name for m in pkgutil.iter_modules(families.__path__)),
                   key=lambda n: (order.index(n) if n in order else len(order), n))  # fmt: skip
    for name in names:
        module = importlib.import_module(f"{families.__name__}.{name}")
        found.extend(getattr(module, "CASES", ()))
    ids = [c.id for c in found]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"duplicate case ids: {', '.join(dupes)}")
    return found


def select(cases: list[Case], only: list[str], quick: bool) -> list[Case]:
    """``--only`` names families or case ids (unknown names are an error); ``--quick`` keeps
    the quick subset."""
    chosen = cases
    if only:
        known = {c.id for c in cases} | {c.family for c in cases}
        unknown = [o for o in only if o not in known]
        if unknown:
            raise ValueError(f"--only: unknown family or case id: {', '.join(unknown)}")
        chosen = [c for c in cases if c.id in only or c.family in only]
    if quick:
        chosen = [c for c in chosen if c.quick]
    return chosen
