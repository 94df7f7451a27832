# ruff: noqa: F811  (the fixtures imported from tests.support are used as arguments)
"""The console in a real headless chromium against the real backend: a supervisor signs in,
filters the calls, opens a real simulated call, plays its recording until the audio element
plays, and an auditor reads the audit entry that playback made; an unsigned browser is sent to
sign-in, a supervisor gets 403 on admin pages, a form without its CSRF token is refused, and
the list stacks into cards on a phone-sized screen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from backend.database import Database
from backend.models import Call
from harness.browser import Browser
from harness.console import seed_calls, write_tone_wav
from tests.support.browser import browser, chromium  # noqa: F401  (fixtures)
from tests.support.console import (  # noqa: F401  (fixtures)
    PASSWORD,
    backend_settings,
    supervisors,
)


async def sign_in(browser: Browser, base: str, name: str) -> None:
    await browser.open(f"{base}/console/sign-in")
    await browser.type("input[name=name]", name)
    await browser.type("input[name=password]", PASSWORD)
    await browser.click("form button[type=submit]")
    await browser.wait_until("document.location.pathname.startsWith('/console/calls')")


async def test_supervisor_finds_a_call_plays_its_recording_and_the_auditor_sees_it(
    browser: Browser, backend, supervisors, make_trucker, phone, db: Database
) -> None:
    base = backend.url
    # Other calls on the same line, earlier the same day: the filter must leave them out.
    await seed_calls(db, 30, datetime.now(UTC) - timedelta(hours=3), caller_id="85290000000")
    trucker = await make_trucker()
    record = await phone(trucker.bundle_keys(), trucker, caller_id="85291234000")
    async with db.sessions() as session:
        call = await session.scalar(select(Call).where(Call.uniqueid == record.uniqueid))
    assert call is not None
    write_tone_wav(backend.settings.recordings_dir / f"{record.uniqueid}.wav", seconds=4)

    await browser.open(f"{base}/console/calls")
    assert "/console/sign-in" in browser.url  # not signed in: sent to sign in first
    await sign_in(browser, base, "sam")

    await browser.type("input[name=caller]", "85291234000")
    await browser.click(".filters button[type=submit]")
    await browser.wait_until("document.location.search.includes('caller=85291234000')")
    rows = await browser.find_all("table.calls tbody tr")
    assert len(rows) == 1
    await browser.click("table.calls tbody tr a")
    await browser.wait_until(f"document.location.pathname == '/console/calls/{call.id}'")
    assert "bundle.submitted" in await browser.text(".timeline")
    assert trucker.vehicle in await browser.text("body")

    assert await browser.script("return document.getElementById('recording').paused")
    await browser.script("document.getElementById('recording').play()")
    await browser.wait_until(
        "(a => !a.paused && a.currentTime > 0)(document.getElementById('recording'))"
    )

    await browser.click(".who button")  # sign out
    await browser.wait_until("document.location.pathname == '/console/sign-in'")
    await sign_in(browser, base, "otto")
    await browser.open(f"{base}/console/audit?action=recording_played")
    entries = await browser.find_all("table.audit tbody tr")
    assert len(entries) == 1
    entry = await browser.call(lambda: entries[0].text)
    assert "supervisor:sam" in entry and f"call:{call.id}" in entry


async def test_roles_csrf_and_a_phone_sized_screen(
    browser: Browser, backend, supervisors, db: Database
) -> None:
    base = backend.url
    await seed_calls(db, 3, datetime.now(UTC) - timedelta(hours=1))
    await sign_in(browser, base, "sam")

    await browser.open(f"{base}/console/accounts")
    assert "Not for your role" in await browser.text("h1")
    await browser.open(f"{base}/console/audit")
    assert "Not for your role" in await browser.text("h1")

    await browser.open(f"{base}/console/calls")
    await browser.script("document.querySelector('.who input[name=csrf_token]').remove()")
    await browser.click(".who button")  # sign-out form, without its token
    await browser.wait_until("document.querySelector('#error-message') !== null")
    assert "security token" in await browser.text("#error-message")
    await browser.open(f"{base}/console/calls")
    assert browser.url.endswith("/console/calls")  # still signed in

    await browser.call(browser.driver.set_window_size, 390, 844)
    try:
        await browser.open(f"{base}/console/calls")
        shape = await browser.script(
            "const row = document.querySelector('table.calls tbody tr');"
            "return [getComputedStyle(row).display, document.documentElement.scrollWidth];"
        )
        assert shape[0] == "block" and shape[1] <= 390  # cards, no sideways scrolling
    finally:
        await browser.call(browser.driver.set_window_size, 1280, 900)
