"""The web page in a real browser: Debian's Chromium, headless, driven by Selenium through
Debian's version-matched chromedriver (scripts/system-deps.d/chromium.sh installs both). The
page loads from the running pool, shows the overview and blocks, looks up the miner's account
with its read token and shows the same balance and payment as the API; the language switch
changes the words. Screenshots (desktop 1366 px and phone 390 px) are saved under
tests/artifacts/ (git-ignored) for a person to look at."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.web_support import fetch, pool_with_data

ARTIFACTS = Path(__file__).parent / "artifacts"


def btc_text(sats: int) -> str:
    """What the page shows for an amount (app.js ``btc``): thousands split by spaces."""
    whole, frac = divmod(sats, 100_000_000)
    return f"{whole:,}".replace(",", " ") + f".{frac:08d}"


def _driver() -> Any:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        msg = "chromium/chromedriver missing (run scripts/system-deps.d/chromium.sh)"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1366,900", "--lang=kk", "--no-first-run",
                "--disable-extensions", "--disable-background-networking"):  # fmt: skip
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


def _wait(drv: Any, cond: Any, timeout: float = 15.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout, poll_frequency=0.1).until(cond)


def _text(drv: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return drv.find_element(By.ID, element_id).text


def _full_page(drv: Any, width: int, path: Path) -> None:
    """A screenshot of the whole page at ``width`` CSS pixels."""
    metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600}
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    drv.execute_script("window.dispatchEvent(new Event('resize'))")
    drv.execute_script("return new Promise(r => setTimeout(r, 300))")
    height = drv.execute_script("return document.documentElement.scrollHeight")
    metrics["height"] = min(int(height), 6000)
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    drv.save_screenshot(str(path))


def browse(base: str, account: str, token: str, out: Path) -> dict[str, str]:
    """Drive the page as a miner does (runs in a worker thread: the pool's loop keeps
    serving). Returns what the page showed."""
    from selenium.webdriver.common.by import By

    drv = _driver()
    try:
        drv.get(base + "/")
        _wait(drv, lambda d: _text(d, "v-blocks") not in ("", "—"))
        _wait(drv, lambda d: d.find_elements(By.CSS_SELECTOR, "#t-blocks tbody td.hash"))
        drv.find_element(By.CSS_SELECTOR, '#langs button[data-lang="en"]').click()
        _wait(drv, lambda d: _text(d, "h-account") == "Your account")
        drv.find_element(By.ID, "in-account").send_keys(account)
        drv.find_element(By.ID, "in-token").send_keys("not-the-token")
        drv.find_element(By.ID, "btn-show").click()
        _wait(drv, lambda d: "not valid" in _text(d, "lookup-msg"))
        denied = _text(drv, "lookup-msg")
        drv.find_element(By.ID, "in-token").clear()
        drv.find_element(By.ID, "in-token").send_keys(token)
        drv.find_element(By.ID, "btn-show").click()
        _wait(drv, lambda d: d.find_element(By.ID, "acct").is_displayed())
        seen = {
            "denied": denied,
            "immature": _text(drv, "b-immature"),
            "mature": _text(drv, "b-mature"),
            "pending": _text(drv, "b-pending"),
            "paid": _text(drv, "b-paid"),
            "payments": drv.find_element(By.ID, "t-payments").text,
            "workers": drv.find_element(By.ID, "t-workers").text,
            "blocks": drv.find_element(By.ID, "t-blocks").text,
            "token_field": drv.find_element(By.ID, "in-token").get_attribute("value") or "",
        }
        _full_page(drv, 1366, out / "web-desktop-en.png")
        drv.find_element(By.CSS_SELECTOR, '#langs button[data-lang="ru"]').click()
        _wait(drv, lambda d: d.execute_script("return document.documentElement.lang") == "ru")
        seen["paid_label_ru"] = drv.find_element(By.CSS_SELECTOR, '[data-i18n="paid"]').text
        drv.find_element(By.CSS_SELECTOR, '#langs button[data-lang="kk"]').click()
        seen["paid_label_kk"] = drv.find_element(By.CSS_SELECTOR, '[data-i18n="paid"]').text
        _full_page(drv, 390, out / "web-phone-kk.png")
        seen["overflow_390"] = str(drv.execute_script(
            "return document.documentElement.scrollWidth > window.innerWidth"))  # fmt: skip
        logs = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"
                and "401" not in e["message"] and "404" not in e["message"]]  # fmt: skip
        seen["console_errors"] = repr(logs)
        return seen
    finally:
        drv.quit()


async def test_page_shows_the_same_balance_as_the_api(sqlite_template, tmp_path):
    """SQLite only: the browser sees the API, which tests/test_web_api.py runs on both."""
    from poolserver.storage.engine import create_engine

    db = tmp_path / "qazpool.sqlite3"
    shutil.copyfile(sqlite_template, db)
    db_url = f"sqlite+aiosqlite:///{db}"
    engine = create_engine(db_url)
    try:
        api, pays, seen = await _run_page(db_url, engine, tmp_path)
    finally:
        await engine.dispose()
    _check(api, pays, seen)


async def _run_page(db_url: str, engine: Any, tmp_path: Path) -> tuple[Any, Any, Any]:
    async with pool_with_data(db_url, engine, tmp_path) as pool:
        status, api, _ = await fetch(pool.base, "/api/v1/accounts/alice/balance", pool.token)
        assert status == 200 and api["paid_sats"] > 0 and api["immature_sats"] > 0
        _, pays, _ = await fetch(pool.base, "/api/v1/accounts/alice/payments", pool.token)
        ARTIFACTS.mkdir(exist_ok=True)
        seen = await asyncio.to_thread(browse, pool.base, "alice", pool.token, ARTIFACTS)
    print(f"screenshots: {ARTIFACTS / 'web-desktop-en.png'}, {ARTIFACTS / 'web-phone-kk.png'}")
    return api, pays, seen


def _check(api: Any, pays: Any, seen: dict[str, str]) -> None:
    assert seen["denied"] == "No such account, or the token is not valid for it."
    assert seen["immature"] == btc_text(api["immature_sats"])
    assert seen["mature"] == btc_text(api["mature_sats"])
    assert seen["pending"] == btc_text(api["pending_payout_sats"])
    assert seen["paid"] == btc_text(api["paid_sats"])
    (payment,) = pays["items"]
    assert payment["txid"][:10] in seen["payments"] and btc_text(payment["amount_sats"]) in (
        seen["payments"])  # fmt: skip
    assert "rig1" in seen["workers"] and "rig2" in seen["workers"]
    assert "matured" in seen["blocks"] and "confirming" in seen["blocks"]
    assert seen["token_field"] == ""  # the token is not kept in the form
    assert seen["paid_label_ru"] == "Выплачено" and seen["paid_label_kk"] == "Төленді"
    assert seen["overflow_390"] == "False"  # nothing wider than a phone screen
    assert seen["console_errors"] == "[]"
