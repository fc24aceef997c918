"""The security suite (issue 14) against real pools: the quick subset against a well-configured
pool holds and yields a signed protocol (default run); the full suite holds (slow); and every
case fails against a pool weakened in the one way the case claims to detect (slow): the
weakenings live in ``tests.weak_pool`` only, never in the production config."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from poolserver.commands.security_suite import is_loopback, parse_target
from poolserver.security_suite.model import all_cases, select
from tests.pool_process import ROOT
from tests.security_support import SuitePool, keygen, run_suite
from tests.weak_pool import WEAKENINGS

# case id -> the weakening(s) of the pool under which it must fail ("harness:" = a change the
# test makes to the pool's files instead of its code).
DEFENCES: dict[str, tuple[str, ...]] = {
    **{f"FR-{i:02d}": ("no_line_limit",) for i in (1, 2, 3)},
    "FR-04": ("no_timeouts",),
    **{f"FR-{i:02d}": ("lenient_framing",) for i in (*range(5, 14), *range(15, 31))},
    "FR-14": ("no_auth_check",),
    "PA-01": ("no_auth_check",),
    "PA-02": ("no_auth_check",),
    "PA-03": ("lenient_jobs",),
    "PA-04": ("lenient_jobs",),
    "PA-05": ("no_dedup",),
    "PA-06": ("no_diff_check",),
    "PA-07": ("no_diff_check",),
    "PA-08": ("no_en2_check",),
    "PA-09": ("no_en2_check",),
    "PA-10": ("no_ntime_check",),
    "PA-11": ("no_ntime_check",),
    "PA-12": ("no_version_mask",),
    **{f"PA-{i:02d}": ("no_diff_clamp",) for i in range(13, 18)},
    **{f"PA-{i:02d}": ("no_version_mask",) for i in range(18, 22)},
    "EX-01": ("no_conn_cap",),
    "EX-02": ("no_timeouts",),
    "EX-03": ("no_write_limit",),
    "EX-04": ("no_flood_limit",),
    "EX-05": ("no_bans",),
    "EX-06": ("no_bans",),
    "EX-07": ("no_timeouts",),
    "EX-08": ("no_flood_limit",),
    "EX-09": ("no_fd_raise",),
    "EX-10": ("no_global_cap",),
    "CR-01": ("no_dedup",),
    "CR-02": ("no_dedup",),
    "CR-03": ("no_dedup",),
    "CR-04": ("no_resume_check",),
    "CR-05": ("no_dedup",),
    "CR-06": ("lenient_jobs", "no_dedup"),
    "CR-07": ("ignore_outside_bits", "no_dedup"),
    "CR-08": ("lenient_hex", "no_dedup"),
    "CR-09": ("no_auth_check",),
    "CR-10": ("no_enforce",),
    **{f"ID-{i:02d}": ("no_enforce",) for i in range(1, 5)},
    **{f"ID-{i:02d}": ("lenient_names",) for i in (5, 7, 8, 9, 10, 11, 13, 14)},
    **{f"ID-{i:02d}": ("lenient_names", "no_enforce") for i in (6, 12, 15, 16, 17)},
    "CT-01": ("leaky_metrics",),
    "CT-02": ("extra_listener",),
    "CT-03": ("lenient_framing",),
    "CT-04": ("harness:key_world_readable",),
    "CT-05": ("harness:data_dir_world_writable",),
    "WB-01": ("web_enumeration",),
    "WB-02": ("no_web_rate_limit",),
    "WB-03": ("web_trust_forwarded",),
    "WB-04": ("web_query_token", "web_cacheable", "web_cors"),
    "WB-05": ("web_open_regulator",),
    "WB-06": ("web_naive_static",),
    "WB-07": ("web_lenient_params",),
    "WB-08": ("web_any_method",),
    "WB-09": ("web_huge_headers",),
    "WB-10": ("web_headers_on_success_only",),
    "WB-11": ("web_unsafe_csp",),
    "WB-12": ("web_bind_all",),
}


def test_every_case_has_a_weakening_that_must_make_it_fail() -> None:
    cases = all_cases()
    assert len(cases) >= 60
    ids = {c.id for c in cases}
    assert ids == set(DEFENCES), (sorted(ids - set(DEFENCES)), sorted(set(DEFENCES) - ids))
    for weakenings in DEFENCES.values():
        for w in weakenings:
            assert w.startswith("harness:") or w in WEAKENINGS, w
    families = {c.family for c in cases}
    assert families == {"framing", "protocol_abuse", "exhaustion", "credit", "identity",
                        "control", "web"}


def test_selection_and_target_rules() -> None:
    cases = all_cases()
    assert {c.family for c in select(cases, ["credit"], False)} == {"credit"}
    assert [c.id for c in select(cases, ["PA-05", "CT-04"], False)] == ["PA-05", "CT-04"]
    assert all(c.quick for c in select(cases, [], True))
    with pytest.raises(ValueError, match="--only: unknown family or case id: nope"):
        select(cases, ["nope"], False)
    assert parse_target("127.0.0.1:3333") == ("127.0.0.1", 3333)
    assert parse_target("[::1]:3333") == ("::1", 3333)
    with pytest.raises(ValueError, match="--target"):
        parse_target("127.0.0.1")
    assert is_loopback("127.0.0.2") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("10.0.0.1") and not is_loopback("pool.example.kz")


def test_non_loopback_target_refused_without_authorization(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "poolserver", "security-suite", "--target",
                          "192.0.2.10:3333", "--key", str(tmp_path / "k")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 2
    assert "not a loopback address" in res.stderr and "--i-am-authorized" in res.stderr


def _verify(out: Path, pub: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "poolserver", "security-suite", "verify",
                           str(out), "--pubkey", str(pub)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def _start(tmp: Path, weakenings: tuple[str, ...] = ()) -> SuitePool:
    pool = SuitePool(tmp, weakenings)
    pool.start()
    try:
        asyncio.run(pool.wait_ready())
        keygen(pool, pool.data_dir / "report-signing.key")
    except BaseException:
        pool.ensure_stopped()
        raise
    return pool


def _not_held(doc: dict) -> dict[str, list[str]]:
    return {c["id"]: [o for o in c["observation"] if not o.startswith("OK: ")]
            for c in doc["cases"] if c["verdict"] != "held"}  # fmt: skip


def test_quick_subset_holds_on_a_real_pool_and_the_protocol_is_signed(tmp_path: Path) -> None:
    pool = _start(tmp_path / "pool")
    try:
        tester = keygen(pool, tmp_path / "tester.key")
        out = tmp_path / "protocol"
        res, doc = run_suite(pool, tester, out, "--quick")
    finally:
        pool.ensure_stopped()
    assert _not_held(doc) == {}, res.stderr[-3000:]
    assert res.returncode == 0
    assert doc["summary"]["total"] == len(select(all_cases(), [], True))
    assert doc["run"]["target"] == f"127.0.0.1:{pool.port}"
    assert doc["run"]["started_kz"].endswith("UTC+5") and doc["run"]["user"]
    assert len(doc["software"]["tree_sha256"]) == 64
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", "manifest.sig", "protocol.json", "protocol_kk.html", "protocol_kk.pdf",
        "protocol_ru.html", "protocol_ru.pdf"]
    assert "ПРОЙДЕНО" in (out / "protocol_ru.html").read_text()
    assert "ӨТТІ" in (out / "protocol_kk.html").read_text()
    assert (out / "protocol_kk.pdf").read_bytes().startswith(b"%PDF")
    # the tester's public key verifies it; any edit is named
    pub = tester.with_name(tester.name + ".pub")
    ok = _verify(out, pub)
    assert ok.returncode == 0 and "signature valid" in ok.stdout, ok.stdout + ok.stderr
    edited = json.loads((out / "protocol.json").read_text())
    edited["cases"][0]["verdict"] = "held"
    edited["summary"]["held"] += 0
    (out / "protocol.json").write_text(json.dumps(edited) + " ")
    bad = _verify(out, pub)
    assert bad.returncode == 1 and "protocol.json: changed" in bad.stdout
    # the pool's own report key does not verify the tester's protocol
    other = _verify(out, pool.data_dir / "report-signing.key.pub")
    assert other.returncode == 1


@pytest.mark.slow
def test_full_suite_holds_on_a_real_pool(tmp_path: Path) -> None:
    pool = _start(tmp_path / "pool")
    try:
        tester = keygen(pool, tmp_path / "tester.key")
        res, doc = run_suite(pool, tester, tmp_path / "protocol")
    finally:
        pool.ensure_stopped()
    assert _not_held(doc) == {}, res.stderr[-3000:]
    assert doc["summary"]["all_held"] and doc["summary"]["total"] == len(all_cases())


# Cases that check several independent defences: each weakening alone must make the case fail,
# so they get one weakened run per defence instead of one run with all of them off.
EACH_ALONE = {"WB-04"}


def _groups() -> dict[tuple[str, ...], list[str]]:
    groups: dict[tuple[str, ...], list[str]] = {}
    for case_id, weakenings in DEFENCES.items():
        runs = [(w,) for w in weakenings] if case_id in EACH_ALONE else [weakenings]
        for run in runs:
            groups.setdefault(run, []).append(case_id)
    return groups


@pytest.mark.slow
@pytest.mark.parametrize("weakenings", sorted(_groups()), ids="+".join)
def test_cases_fail_against_the_weakened_pool(tmp_path: Path, weakenings: tuple[str, ...]
                                              ) -> None:  # fmt: skip
    cases = _groups()[weakenings]
    code = tuple(w for w in weakenings if not w.startswith("harness:"))
    pool = _start(tmp_path / "pool", code)
    try:
        if "harness:key_world_readable" in weakenings:
            os.chmod(pool.data_dir / "report-signing.key", 0o644)
        if "harness:data_dir_world_writable" in weakenings:
            os.chmod(pool.data_dir, 0o777)
        tester = keygen(pool, tmp_path / "tester.key")
        res, doc = run_suite(pool, tester, tmp_path / "protocol", "--only", *cases)
    finally:
        pool.ensure_stopped()
    verdicts = {c["id"]: c["verdict"] for c in doc["cases"]}
    assert sorted(verdicts) == sorted(cases)
    held = [i for i, v in verdicts.items() if v != "failed"]
    assert held == [], f"not detected under {weakenings}: {held}\n" + "\n".join(
        f"{c['id']}: {c['observation']}" for c in doc["cases"] if c["id"] in held)
    assert res.returncode == 1


def test_web_cases_are_not_applicable_when_the_web_server_is_disabled() -> None:
    """[web].enabled = false: every web case says so and is never counted as held."""
    from poolserver.commands.security_suite import _web_url
    from poolserver.config import Config, WebConfig
    from poolserver.security_suite.context import Context
    from poolserver.security_suite.model import NOT_APPLICABLE, Observation, Result
    from poolserver.security_suite.protocol import document

    config = Config(web=WebConfig(enabled=False))
    ctx = Context("127.0.0.1", 1, config, None, 0, None, None, None)  # type: ignore[arg-type]
    ctx.web_url, ctx.web_off = _web_url(config, None)
    assert ctx.web_url is None and "[web].enabled = false" in ctx.web_off
    web_cases = select(all_cases(), ["web"], False)
    assert len(web_cases) >= 10
    results = []
    for case in web_cases:
        obs = Observation(True)
        asyncio.run(case.body(ctx, obs))
        assert obs.not_applicable == ctx.web_off, case.id
        results.append(Result(case, NOT_APPLICABLE, obs.facts, "", 0.0, {}))
    ct = next(c for c in all_cases() if c.id == "CT-01")
    s = document({}, [*results, Result(ct, "held", [], "", 0.0, {})], [])["summary"]
    assert (s["held"], s[NOT_APPLICABLE], s["all_held"]) == (1, len(results), True)
    only_na = document({}, results, [])["summary"]
    assert only_na["held"] == 0 and not only_na["all_held"]
    # an ephemeral [web] port cannot be guessed: the tester must name it
    assert _web_url(Config(web=WebConfig(port=0)), None)[0] is None
    assert _web_url(Config(web=WebConfig(port=0)), "http://127.0.0.1:9/")[0] == "http://127.0.0.1:9"
    assert _web_url(Config(web=WebConfig(host="0.0.0.0", port=81)), None)[0] == \
        "http://127.0.0.1:81"


def test_the_spread_flood_is_not_applicable_above_what_it_opens_cheaply() -> None:
    """EX-10 with a global cap above 2 000 (no --metrics: the cap comes from the operator's
    config) says why it did not flood, and is not counted as held."""
    from poolserver.config import Config, StratumConfig
    from poolserver.security_suite.context import Context
    from poolserver.security_suite.model import Observation

    config = Config(stratum=StratumConfig(max_connections=5000))
    ctx = Context("127.0.0.1", 1, config, None, os.getpid(), None, None, None)  # type: ignore[arg-type]
    (case,) = select(all_cases(), ["EX-10"], False)
    obs = Observation(True)
    asyncio.run(case.body(ctx, obs))
    assert obs.held and obs.not_applicable.startswith(
        "the global cap in force is 5000 connections: more than this case opens cheaply (2000)")
