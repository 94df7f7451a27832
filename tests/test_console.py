"""The supervisors' console over real HTTP (aiohttp client against the real backend server):
sign-in and sessions, CSRF, roles, the calls list and its keyset paging, a call's page from
a real simulated call, recordings with Range and their audit, live calls, accounts, the audit
log and the daily summary; the queries that differ by database on PostgreSQL too. The browser
tests are in test_console_browser.py."""

# ruff: noqa: F811  (the fixtures imported from tests.support are used as arguments)
from __future__ import annotations

import asyncio
import getpass
import html
import os
import re
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from backend import admin, audit
from backend.admin import AdminError, assign_token, import_tokens
from backend.app import RunningBackend, start_backend
from backend.console.auth import create_supervisor
from backend.console.listen import AMI
from backend.database import Database
from backend.models import Account, AuditEntry, Call, Recording, Token
from harness.console import seed_calls, write_tone_wav
from simulator import Command, place_call
from tests.support.console import (  # noqa: F401  (fixtures)
    PASSWORD,
    ConsoleFactory,
    WithAmi,
    backend_settings,
    backend_with_ami,
    call_api,
    console,
    on_asterisk,
    supervisors,
    with_ami,
)
from tests.support.databases import DATABASES

# The console's queries that differ by database (keyset paging by row values on the
# (started_at, id) indexes, the filters, the summary, a playback's audit) run on PostgreSQL,
# the production database, as well as on SQLite.
ON_BOTH = pytest.mark.parametrize("database", DATABASES, indirect=True)
ROW_LINK = re.compile(r'href="/console/calls/(\d+)"')


async def audit_entries(db: Database, action: str) -> list[AuditEntry]:
    async with db.sessions() as session:
        return list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            )
        )


def listed_ids(html: str) -> list[int]:
    return [int(i) for i in ROW_LINK.findall(html)]


def link(html: str, rel: str) -> str | None:
    found = re.search(rf'rel="{rel}" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


# --- sign-in, sessions, CSRF, roles -----------------------------------------------------------


async def test_unsigned_user_is_sent_to_sign_in_and_back(console: ConsoleFactory) -> None:
    client = await console()
    page = await client.get("/console/calls?outcome=completed", allow_redirects=False)
    assert page.status == 302
    location = page.headers["Location"]
    assert location.startswith("/console/sign-in?next=")
    assert unquote(location.split("next=")[1]) == "/console/calls?outcome=completed"

    page = await client.sign_in("sam", next="/console/calls?outcome=completed")
    assert page.status == 200 and page.url.endswith("/console/calls?outcome=completed")


async def test_sign_in_cookie_is_httponly_strict_and_secure_unless_plain_http_is_allowed(
    backend, supervisors, console: ConsoleFactory
) -> None:
    client = await console()
    await client.get("/console/sign-in")
    page = await client.post(
        "/console/sign-in", {"name": "sam", "password": PASSWORD}, allow_redirects=False
    )
    cookie = next(c for c in page.headers.getall("Set-Cookie") if c.startswith("ivrs_console="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie

    secure = await start_backend(replace(backend.settings, console_plain_http=False))
    try:
        client = await console()
        client.url = secure.url
        form = await client.get("/console/sign-in")
        # The client keeps Secure cookies for HTTPS: the form's token goes back by hand.
        page = await client.post(
            "/console/sign-in",
            {"name": "sam", "password": PASSWORD},
            headers={"Cookie": f"__Host-ivrs_console_sign_in={client.csrf}"},
            allow_redirects=False,
        )
        assert form.headers["Set-Cookie"].startswith("__Host-ivrs_console_sign_in=")
        assert "Secure" in form.headers["Set-Cookie"]
        cookie = next(c for c in page.headers.getall("Set-Cookie") if "ivrs_console=" in c)
        assert cookie.startswith("__Host-ivrs_console=")
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    finally:
        await secure.stop()


async def test_wrong_password_is_refused_and_audited_without_the_password(
    console: ConsoleFactory, db: Database
) -> None:
    client = await console()
    page = await client.sign_in("sam", password="not-the-password-42")
    assert page.status == 401 and "not correct" in page.text
    page = await client.sign_in("nobody", password="not-the-password-42")
    assert page.status == 401

    failed = await audit_entries(db, "sign_in_failed")
    assert [(e.target, e.detail["reason"]) for e in failed] == [
        ("supervisor:sam", "wrong_password"),
        ("supervisor:nobody", "unknown_name"),
    ]
    assert all(e.actor == "unknown" and e.source == "127.0.0.1" for e in failed)
    async with db.sessions() as session:
        stored = [repr(row.__dict__) for row in await session.scalars(select(AuditEntry))]
    assert not any("not-the-password-42" in row for row in stored)
    assert not any(PASSWORD in row for row in stored)


async def test_five_failures_refuse_the_name_for_a_while(
    console: ConsoleFactory, db: Database, clock
) -> None:
    client = await console()
    for _ in range(5):
        assert (await client.sign_in("sam", password="wrong-password-1")).status == 401
    page = await client.sign_in("sam")  # the right password, refused all the same
    assert page.status == 429 and "Too many failed sign-ins" in page.text
    assert len(await audit_entries(db, "sign_in_refused")) == 1
    clock.advance(16 * 60)
    assert (await client.sign_in("sam")).url.endswith("/console/calls")


async def test_forms_without_the_csrf_token_are_refused(console: ConsoleFactory) -> None:
    client = await console("supervisor")
    page = await client.post("/console/sign-out", csrf=False)
    assert page.status == 403 and "security token" in page.text
    page = await client.post("/console/sign-out", {"csrf_token": "forged"}, csrf=False)
    assert page.status == 403
    assert (await client.get("/console/calls")).status == 200  # still signed in

    fresh = await console()
    await fresh.get("/console/sign-in")
    page = await fresh.post("/console/sign-in", {"name": "sam", "password": PASSWORD}, csrf=False)
    assert page.status == 403


async def test_each_role_opens_only_its_pages(console: ConsoleFactory) -> None:
    expected = {
        "supervisor": {"/console/calls": 200, "/console/accounts": 403, "/console/audit": 403},
        "admin": {"/console/calls": 200, "/console/accounts": 200, "/console/audit": 403},
        "auditor": {"/console/calls": 200, "/console/accounts": 403, "/console/audit": 200},
    }
    for role, pages in expected.items():
        client = await console(role)
        seen = {path: (await client.get(path)).status for path in pages}
        assert seen == pages, role
    page = await (await console("supervisor")).get("/console/accounts/12345678")
    assert page.status == 403 and "does not open this page" in page.text
    assert "<nav" in page.text  # a page of the console, not a bare error


@ON_BOTH
async def test_session_ends_after_idle_time_after_its_lifetime_and_at_sign_out(
    console: ConsoleFactory, backend, clock, db: Database
) -> None:
    settings = backend.settings
    client = await console("supervisor")
    clock.advance(settings.console_idle_timeout.total_seconds() - 5)
    assert (await client.get("/console/calls")).status == 200  # activity keeps it alive
    clock.advance(settings.console_idle_timeout.total_seconds() + 1)
    page = await client.get("/console/calls", allow_redirects=False)
    assert page.status == 302 and "expired=1" in page.headers["Location"]
    assert "session expired" in (await client.get(page.headers["Location"])).text

    client = await console("supervisor")
    step = settings.console_idle_timeout.total_seconds() / 2
    for _ in range(int(settings.console_session_lifetime.total_seconds() // step) + 1):
        clock.advance(step)
        page = await client.get("/console/calls", allow_redirects=False)
    assert page.status == 302  # used all along, and still over at the lifetime

    client = await console("supervisor")
    page = await client.post("/console/sign-out")
    assert page.url.endswith("/console/sign-in")
    assert (await client.get("/console/calls", allow_redirects=False)).status == 302
    assert [e.actor for e in await audit_entries(db, "signed_out")] == ["supervisor:sam"]


# --- calls --------------------------------------------------------------------------------------


@ON_BOTH
async def test_calls_list_filters_and_pages_through_every_call_once(
    console: ConsoleFactory, db: Database
) -> None:
    start = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
    hot = await seed_calls(db, 120, start, hotline="39023333", recorded=True)
    other = await seed_calls(
        db, 30, start, every=timedelta(minutes=4), hotline="31532265", outcome="login_failed"
    )
    client = await console("supervisor")

    seen: list[int] = []
    path: str | None = "/console/calls?hotline=39023333"
    while path:
        page = await client.get(path)
        assert page.status == 200
        seen += listed_ids(page.text)
        path = link(page.text, "next")
    assert seen == sorted(hot, reverse=True)  # newest first, each once, none of the other line

    older = link((await client.get("/console/calls?hotline=39023333")).text, "next")
    second = await client.get(older or "")
    back = await client.get(link(second.text, "prev") or "")
    assert listed_ids(back.text) == sorted(hot, reverse=True)[:50]
    assert link(back.text, "prev") is None  # the newest page has nothing newer

    page = await client.get("/console/calls?outcome=login_failed&recording=no")
    assert sorted(listed_ids(page.text)) == sorted(other)
    page = await client.get("/console/calls?recording=yes&hotline=31532265")
    assert listed_ids(page.text) == [] and "No calls match" in page.text
    page = await client.get("/console/calls?from=2026-11-02T09:00&to=2026-11-02T09:10")
    # 09:00 Hong Kong is 01:00 UTC: the calls started at minutes 60..69 of each line.
    expected = [i for i, n in zip(hot, range(120), strict=True) if 60 <= n < 70]
    expected += [i for i, n in zip(other, range(30), strict=True) if 60 <= 4 * n < 70]
    assert sorted(listed_ids(page.text)) == sorted(expected)


async def test_unreadable_filters_are_explained_and_ignored(
    console: ConsoleFactory, db: Database
) -> None:
    await seed_calls(db, 3, datetime(2026, 11, 2, tzinfo=UTC))
    client = await console("supervisor")
    page = await client.get("/console/calls?from=yesterday&recording=maybe&before=x")
    assert page.status == 400
    text = html.unescape(page.text)
    assert "'from' is not a date and time" in text and "'recording' is yes, no" in text
    assert len(listed_ids(page.text)) == 3


async def test_call_page_shows_the_timeline_masked_inputs_and_the_bundle(
    console: ConsoleFactory, make_trucker, phone, db: Database
) -> None:
    trucker = await make_trucker()
    record = await phone(trucker.bundle_keys(), trucker, caller_id="85291230000")
    call = await _call(db, record.uniqueid)
    client = await console("supervisor")

    page = await client.get(f"/console/calls?caller=85291230000&account={trucker.account}")
    assert listed_ids(page.text) == [call.id]
    page = await client.get(f"/console/calls/{call.id}")
    assert page.status == 200
    for shown in ("login.password", "bundle.submitted", "login_ok", trucker.ccrns[0]):
        assert shown in page.text
    assert "***" in page.text and trucker.password not in page.text
    async with db.sessions() as session:
        reference = (await session.scalars(select(Call))).first()
    assert reference is not None
    assert "No bundle was made" not in page.text and trucker.vehicle in page.text
    assert "No recording of this call" in page.text
    assert (await client.get("/console/calls/999999")).status == 404


async def _call(db: Database, uniqueid: str) -> Call:
    async with db.sessions() as session:
        call = await session.scalar(select(Call).where(Call.uniqueid == uniqueid))
    assert call is not None
    return call


def recording_links(html: str) -> tuple[str | None, str | None]:
    play = re.search(r'<audio id="recording"[^>]* src="([^"]+)"', html)
    download = re.search(r'id="download" href="([^"]+)"', html)
    return (
        play.group(1).replace("&amp;", "&") if play else None,
        download.group(1).replace("&amp;", "&") if download else None,
    )


@ON_BOTH
async def test_recording_is_served_in_ranges_and_each_playback_audited_once(
    console: ConsoleFactory, db: Database, backend
) -> None:
    [call_id, other_id] = await seed_calls(db, 2, datetime(2026, 11, 2, tzinfo=UTC))
    call = await _call_by_id(db, call_id)
    wav = write_tone_wav(backend.settings.recordings_dir / f"{call.uniqueid}.wav")
    size = wav.stat().st_size
    client = await console("supervisor")

    play, download = recording_links((await client.get(f"/console/calls/{call_id}")).text)
    assert play is not None and download is None  # supervisors play, do not download
    status, body, headers = await client.get_bytes(play, headers={"Range": "bytes=0-99"})
    assert (status, len(body), headers["Content-Range"]) == (206, 100, f"bytes 0-99/{size}")
    assert body[:4] == b"RIFF" and headers["Content-Type"] == "audio/wav"
    status, body, headers = await client.get_bytes(play, headers={"Range": "bytes=1000-"})
    assert (status, headers["Content-Range"]) == (206, f"bytes 1000-{size - 1}/{size}")
    assert body == wav.read_bytes()[1000:]
    assert (await client.get_bytes(play))[0] == 200  # the whole file, same playback

    played = await audit_entries(db, "recording_played")
    assert [(e.actor, e.target) for e in played] == [("supervisor:sam", f"call:{call_id}")]

    play_again, _ = recording_links((await client.get(f"/console/calls/{call_id}")).text)
    assert play_again != play
    await client.get_bytes(play_again or "", headers={"Range": "bytes=0-"})
    assert len(await audit_entries(db, "recording_played")) == 2  # a new page view: a new one

    # No ticket, a forged one, another call's, another session's: nothing served.
    base = f"/console/calls/{call_id}/recording"
    assert (await client.get_bytes(base))[0] == 403
    assert (await client.get_bytes(base + "?ticket=play.abc.def"))[0] == 403
    assert (await client.get_bytes(f"/console/calls/{other_id}/recording?{play.split('?')[1]}"))[
        0
    ] == 403
    stranger = await console("auditor")
    assert (await stranger.get_bytes(play))[0] == 403
    forged = play.replace("ticket=play.", "ticket=download.")
    assert (await client.get_bytes(forged))[0] == 403
    assert len(await audit_entries(db, "recording_played")) == 2


async def _call_by_id(db: Database, call_id: int) -> Call:
    async with db.sessions() as session:
        call = await session.get(Call, call_id)
    assert call is not None
    return call


async def test_admin_downloads_a_recording_and_the_download_is_audited(
    console: ConsoleFactory, db: Database, backend
) -> None:
    [call_id] = await seed_calls(db, 1, datetime(2026, 11, 2, tzinfo=UTC))
    call = await _call_by_id(db, call_id)
    wav = write_tone_wav(backend.settings.recordings_dir / f"{call.uniqueid}.wav", seconds=1)
    client = await console("admin")
    _, download = recording_links((await client.get(f"/console/calls/{call_id}")).text)
    assert download is not None
    status, body, headers = await client.get_bytes(download)
    assert status == 200 and body == wav.read_bytes()
    assert headers["Content-Disposition"].startswith("attachment;")
    entries = await audit_entries(db, "recording_downloaded")
    assert [(e.actor, e.target) for e in entries] == [("supervisor:ada", f"call:{call_id}")]
    await client.get_bytes(download, headers={"Range": "bytes=100-"})  # a resumed download
    assert len(await audit_entries(db, "recording_downloaded")) == 1
    await client.get_bytes(download)  # downloaded again
    assert len(await audit_entries(db, "recording_downloaded")) == 2
    page = await client.get("/console/calls?recording=yes")
    assert listed_ids(page.text) == [call_id]  # found on disk, now filterable


async def test_live_calls_show_the_newest_stage_the_ivr_reported(
    console: ConsoleFactory, backend, db: Database
) -> None:
    opened = await call_api(
        backend,
        "/v1/calls",
        {
            "uniqueid": "live-1",
            "hotline": "39023333",
            "caller_id": "85291110000",
            "channel": "PJSIP/t-1",
        },
    )
    now = datetime.now(UTC)
    events = [
        {"at": (now + timedelta(seconds=s)).isoformat(), "kind": "stage", "name": n}
        for s, n in [(0, "login"), (1, "menu")]
    ]
    await call_api(backend, f"/v1/calls/{opened['call_id']}/events", {"events": events})
    await seed_calls(db, 1, datetime.now(UTC) - timedelta(hours=2), live=True)  # lost, not live
    client = await console("supervisor")
    page = await client.get("/console/live")
    assert 'class="stage">menu<' in page.text
    assert "85291110000" in page.text and page.text.count('class="stage"') == 1
    assert "Listen in" not in page.text  # AMI is not configured here
    assert "AMI settings" in page.text


async def test_a_live_call_shows_the_newest_step_the_backend_recorded(
    console: ConsoleFactory, backend, make_trucker
) -> None:
    """The IVR's stage events come with the call's end: meanwhile the live page shows what the
    backend itself recorded in the call (its login, its bundle)."""
    trucker = await make_trucker()
    caller = "85291110001"
    opened = await call_api(
        backend,
        "/v1/calls",
        {"uniqueid": "live-2", "hotline": "39023333", "caller_id": caller, "channel": "PJSIP/t-2"},
    )
    client = await console("supervisor")
    assert 'class="stage">starting<' in (await client.get("/console/live")).text
    login = {
        "account": trucker.account,
        "password": trucker.password,
        "token_code": trucker.code(),
        "call_id": opened["call_id"],
        "caller_id": caller,
    }
    await call_api(backend, "/v1/sessions", login)
    assert 'class="stage">login_ok<' in (await client.get("/console/live")).text


LIVE_ROW = re.compile(r'<tr class="live-(\w+)" data-channel="([^"]*)">(.*?)</tr>', re.DOTALL)


def live_rows(html: str) -> dict[str, tuple[str, str]]:
    """The live page's rows: channel -> (state, the row's HTML)."""
    return {channel: (state, row) for state, channel, row in LIVE_ROW.findall(html)}


async def test_the_live_page_says_so_when_asterisk_refuses_to_list_its_channels(
    backend: RunningBackend, console: ConsoleFactory, db: Database
) -> None:
    """An AMI user without `reporting` (manager.conf) may not run CoreShowChannels."""
    [call_id] = await seed_calls(
        db, 1, datetime.now(UTC) - timedelta(minutes=1), live=True, channel="PJSIP/carrier-0000ab"
    )
    async with backend_with_ami(backend, write=frozenset({"call", "originate"})) as with_ami:
        client = await console()
        client.url = with_ami.backend.url
        await client.sign_in("sam")
        page = await client.get("/console/live")
        asked = [a["Action"] for a in with_ami.ami.actions]
    text = html.unescape(page.text)
    assert page.status == 200 and 'id="asterisk-missing"' in text
    assert "Asterisk refused to list its channels: Permission denied" in text
    assert "CoreShowChannels" in asked
    state, row = live_rows(text)["PJSIP/carrier-0000ab"]
    assert state == "unchecked" and f"/console/calls/{call_id}" in row


async def test_live_calls_are_joined_to_asterisks_channels_and_work_without_ami(
    with_ami: WithAmi, ivr, console: ConsoleFactory, db: Database
) -> None:
    ami = with_ami.ami
    at_login, release = asyncio.Event(), asyncio.Event()
    held_for_ms: list[int] = []

    async def hold_at_login(command: Command) -> None:
        if command.prompt_id == "login.account":  # the backend has opened the call by now
            on_asterisk_now = ami.channels.get("PJSIP/carrier-00000001")
            assert on_asterisk_now is not None
            held_for_ms.append(on_asterisk_now.channel.now_ms)
            at_login.set()
            await release.wait()

    ivr_call = asyncio.create_task(
        place_call(
            ivr.host,
            ivr.port,
            keys="3",
            channel="PJSIP/carrier-00000001",
            caller_id="85291112222",
            channels=ami.channels,
            on_command=hold_at_login,
            hangup_at=lambda command: command.prompt_id == "login.account",
        )
    )
    # A call open here that Asterisk no longer has (its hang-up never reached the backend).
    [stale_id] = await seed_calls(
        db, 1, datetime.now(UTC) - timedelta(minutes=3), live=True, channel="PJSIP/carrier-0000ff"
    )
    client = await console()
    client.url = with_ami.backend.url
    await client.sign_in("sam")
    try:
        await asyncio.wait_for(at_login.wait(), 10)
        # And a channel in the IVR's context the backend missed the opening of.
        async with on_asterisk(ami, "PJSIP/carrier-000000aa", caller_id="85293334444"):
            page = await client.get("/console/live")
    finally:
        release.set()
    record = await ivr_call
    assert page.status == 200 and 'id="asterisk-missing"' not in page.text
    rows = live_rows(html.unescape(page.text))
    assert {channel: state for channel, (state, _) in rows.items()} == {
        "PJSIP/carrier-00000001": "live",
        "PJSIP/carrier-0000ff": "gone",
        "PJSIP/carrier-000000aa": "unknown",
    }
    live = rows["PJSIP/carrier-00000001"][1]
    assert "85291112222" in live and f"AGI(agi://127.0.0.1:{ivr.port}/ivrs,39023333)" in live
    # Asterisk's Duration of the channel (the simulator's clock: the prompts played so far).
    assert f'class="for">0:{held_for_ms[0] // 1000:02d}<' in live and held_for_ms[0] >= 1000
    call = await _call(db, record.uniqueid)
    assert f"/console/calls/{call.id}" in live
    gone = rows["PJSIP/carrier-0000ff"][1]
    assert "Ended on Asterisk, not yet closed here" in gone and f"/console/calls/{stale_id}" in gone
    unknown = rows["PJSIP/carrier-000000aa"][1]
    assert "Not known to the backend" in unknown and "85293334444" in unknown

    page = await client.get("/console/live")  # both calls are over on Asterisk now
    assert {state for state, _ in live_rows(page.text).values()} <= {"gone"}
    assert "PJSIP/carrier-000000aa" not in page.text

    await ami.stop()  # Asterisk down: the table's calls alone, and a line that says so
    connection = with_ami.backend.app[AMI]
    assert connection is not None
    await asyncio.wait_for(connection.down.wait(), 10)
    page = await client.get("/console/live")
    assert page.status == 200 and 'id="asterisk-missing"' in page.text
    assert "not connected" in page.text
    rows = live_rows(page.text)
    assert rows["PJSIP/carrier-0000ff"][0] == "unchecked"
    assert "Ended on Asterisk" not in page.text


async def test_an_event_token_shows_its_counter_rather_than_a_period(
    console: ConsoleFactory, make_trucker, db: Database
) -> None:
    trucker = await make_trucker(cargo=0)  # and its hardware (TOTP) token
    seed_file = f"serial,key,type,digits,period,expiry\nHOTP0001,{'31' * 20},hotp,6,,\n"
    await import_tokens(db, seed_file.encode())
    await assign_token(db, "HOTP0001", trucker.account)
    client = await console("admin")
    page = await client.get(f"/console/accounts/{trucker.account}")
    assert "HOTP0001" in page.text
    assert "6 digits, HOTP (counter 0)" in page.text
    assert "6 digits, every 60 s" in page.text  # the TOTP token
    assert "every 0 s" not in page.text and "None" not in page.text


async def test_admin_finds_locks_unlocks_and_enrols_an_account(
    console: ConsoleFactory, make_trucker, db: Database
) -> None:
    trucker = await make_trucker(cargo=0)
    client = await console("admin")
    page = await client.get(f"/console/accounts?number={trucker.account}")
    assert page.url.endswith(f"/console/accounts/{trucker.account}")
    assert "FTK2" in page.text and "2029-04-30" in page.text and "hardware" in page.text
    assert (await client.get("/console/accounts?number=123")).status == 400

    page = await client.post(f"/console/accounts/{trucker.account}/lock")
    assert 'id="status">locked' in page.text
    page = await client.get("/console/accounts?status=locked")
    assert trucker.account in page.text
    page = await client.post(f"/console/accounts/{trucker.account}/unlock")
    assert 'id="status">active' in page.text

    page = await client.post(
        f"/console/accounts/{trucker.account}/enrol", {"digits": "8", "period": "30"}
    )
    assert page.status == 200 and page.headers["Cache-Control"] == "no-store"
    assert 'id="enrolment-qr" src="data:image/png;base64,' in page.text
    async with db.sessions() as session:
        account = await session.scalar(select(Account).where(Account.number == trucker.account))
        assert account is not None
        pending = await session.scalar(
            select(Token).where(Token.account_id == account.id, Token.status == "pending")
        )
    assert pending is not None and pending.digits == 8
    secret = re.search(r"secret=([A-Z2-7]+)", page.text)
    assert secret is not None
    page = await client.get(f"/console/accounts/{trucker.account}")
    assert "enrolment-qr" not in page.text and secret.group(1) not in page.text  # shown once

    actions = [
        (e.action, e.target)
        for e in await audit_entries(db, "account_locked")
        + await audit_entries(db, "account_unlocked")
        + await audit_entries(db, "mobile_token_enrolled")
    ]
    target = f"account:{trucker.account}"
    assert actions == [
        ("account_locked", target),
        ("account_unlocked", target),
        ("mobile_token_enrolled", target),
    ]
    async with db.sessions() as session:
        rows = [repr(e.detail) for e in await session.scalars(select(AuditEntry))]
    assert not any(secret.group(1) in row for row in rows)


async def test_a_change_and_its_audit_entry_commit_together_or_not_at_all(
    make_trucker, db: Database
) -> None:
    """The entry is written in the change's transaction: when the audit log refuses it (a
    trigger on SQLite, the test's database, stands for a crash or a full disk), the account is
    not locked either; a lock that is refused writes no entry; a lock that works writes one."""
    trucker = await make_trucker(cargo=0)
    by = audit.Actor("supervisor:ada", "192.0.2.7")

    async def status() -> str:
        async with db.sessions() as session:
            account = await session.scalar(select(Account).where(Account.number == trucker.account))
        assert account is not None
        return account.status

    async with db.sessions.begin() as session:
        await session.execute(
            text(
                "CREATE TRIGGER audit_refused BEFORE INSERT ON audit_log"
                " BEGIN SELECT RAISE(ABORT, 'the audit log refused the entry'); END"
            )
        )
    with pytest.raises(DBAPIError, match="the audit log refused the entry"):
        await admin.lock(db, trucker.account, by=by)
    assert await status() == "active"
    async with db.sessions.begin() as session:
        await session.execute(text("DROP TRIGGER audit_refused"))
    assert await audit_entries(db, "account_locked") == []

    await admin.lock(db, trucker.account, by=by)
    with pytest.raises(AdminError, match="already locked"):
        await admin.lock(db, trucker.account, by=by)
    assert await status() == "locked"
    entries = await audit_entries(db, "account_locked")
    assert [(e.actor, e.target, e.source) for e in entries] == [
        ("supervisor:ada", f"account:{trucker.account}", "192.0.2.7")
    ]


async def test_auditor_reads_and_filters_the_audit_log(console: ConsoleFactory) -> None:
    await (await console()).sign_in("sam", password="wrong-password-2")
    client = await console("auditor")
    page = await client.get("/console/audit?action=sign_in_failed")
    assert "supervisor:sam" in page.text and "wrong_password" in page.text
    assert "signed_in" not in page.text.split("<tbody>")[1]
    page = await client.get("/console/audit?actor=supervisor:otto")
    assert "signed_in" in page.text
    assert (await client.get("/console/audit?day=someday")).status == 400


@ON_BOTH
async def test_daily_summary_counts_calls_per_hour_outcomes_and_failed_logins(
    console: ConsoleFactory, db: Database
) -> None:
    # 2026-11-02 in Hong Kong: 01:00 UTC is 09:00 there.
    start = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    await seed_calls(db, 6, start, every=timedelta(minutes=10))  # 09:00-09:50
    ids = await seed_calls(db, 2, start + timedelta(hours=5), outcome="login_failed")
    await seed_calls(db, 4, start - timedelta(days=1))  # the day before
    async with db.sessions.begin() as session:
        from backend.models import CallEvent

        session.add_all(
            CallEvent(call_id=i, at=start, kind="backend", name="login_failed", detail={})
            for i in ids
        )
    client = await console("supervisor")
    page = await client.get("/console/summary?day=2026-11-02")
    assert 'id="total-calls">8<' in page.text
    assert 'id="failed-logins">2<' in page.text
    assert "09:00–09:59 · 6 calls" in page.text and "14:00–14:59 · 2 calls" in page.text
    assert re.search(r"completed</a></td><td class=\"num\">6<", page.text)
    assert "<svg" in page.text and "<script" not in page.text
    assert (await client.get("/console/summary?day=02/11/2026")).status == 400


async def test_event_endpoint_keeps_the_last_stage_of_a_call_in_progress(
    backend, db: Database
) -> None:
    opened = await call_api(backend, "/v1/calls", {"uniqueid": "stage-1", "hotline": "39023333"})
    call_id = opened["call_id"]
    at = datetime.now(UTC)
    events = [
        {"at": (at + timedelta(seconds=s)).isoformat(), "kind": k, "name": n}
        for s, k, n in [(0, "stage", "login"), (2, "stage", "menu"), (3, "prompt", "x")]
    ]
    await call_api(backend, f"/v1/calls/{call_id}/events", {"events": events})
    assert (await _call_by_id(db, call_id)).last_stage == "menu"
    ending = {"outcome": "completed", "last_stage": "goodbye", "account": None}
    await call_api(backend, f"/v1/calls/{call_id}/end", ending)
    later = [{"at": (at + timedelta(seconds=9)).isoformat(), "kind": "stage", "name": "x"}]
    await call_api(backend, f"/v1/calls/{call_id}/events", {"events": later})
    assert (await _call_by_id(db, call_id)).last_stage == "goodbye"  # the end has the last word


async def test_listen_in_originates_chanspy_through_ami_and_is_audited(
    with_ami: WithAmi, console: ConsoleFactory, db: Database
) -> None:
    ami = with_ami.ami
    [call_id] = await seed_calls(
        db, 1, datetime.now(UTC) - timedelta(minutes=2), live=True, channel="PJSIP/hk-0001a"
    )
    client = await console()
    client.url = with_ami.backend.url
    await client.sign_in("sam")
    page = await client.get("/console/live")
    assert "Listen in" not in page.text  # Asterisk has no such channel: nothing to listen to
    async with on_asterisk(ami, "PJSIP/hk-0001a"):
        page = await client.get("/console/live")
        assert "Listen in" in page.text
        page = await client.post(f"/console/live/{call_id}/listen")
    assert page.status == 200 and "Your phone is ringing" in page.text
    originates = [a for a in ami.actions if a.get("Action") == "Originate"]
    assert len(originates) == 1
    assert {k: originates[0][k] for k in ("Channel", "Application", "Data")} == {
        "Channel": "Local/201@ivrs-supervisors",
        "Application": "ChanSpy",
        "Data": "PJSIP/hk-0001a,qES",
    }
    entries = await audit_entries(db, "listen_in")
    assert [(e.actor, e.target, e.detail["extension"]) for e in entries] == [
        ("supervisor:sam", f"call:{call_id}", "201")
    ]
    assert (await client.post(f"/console/live/{call_id}/listen", csrf=False)).status == 403

    await ami.stop()  # Asterisk down: a clear error, and the attempt is still audited
    page = await client.post(f"/console/live/{call_id}/listen")
    assert page.status == 502 and "did not start the listening call" in page.text
    assert len(await audit_entries(db, "listen_in")) == 2
    admin = await console()
    admin.url = with_ami.backend.url
    await admin.sign_in("otto")
    assert (await admin.post(f"/console/live/{call_id}/listen")).status == 403


async def ivrs_admin(backend, *args: str, stdin: str = "") -> tuple[int, str]:
    """`ivrs admin ...` in a process of its own, on the test's database."""
    env = {
        **os.environ,
        "IVRS_DATABASE_URL": backend.settings.database_url,
        "IVRS_ARGON2_PROFILE": "test",
        "IVRS_SECRET_KEY": backend.settings.secret_key.decode(),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "admin",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate(stdin.encode())
    return process.returncode or 0, out.decode()


async def test_cli_creates_supervisors_and_its_account_changes_are_audited(
    backend, console: ConsoleFactory, db: Database
) -> None:
    code, out = await ivrs_admin(
        backend,
        "create-supervisor",
        "mei",
        "--role",
        "admin",
        "--password-stdin",
        stdin="a long console password\n",
    )
    assert code == 0, out
    with pytest.raises(AdminError, match="at least 12 characters"):
        await create_supervisor(db, "kit", "admin", "short")
    code, out = await ivrs_admin(backend, "create-account", "87654321", "--password", "135790")
    assert code == 0, out

    client = await console()
    page = await client.sign_in("mei", password="a long console password")
    assert page.url.endswith("/console/calls")
    page = await client.get("/console/accounts/87654321")
    assert page.status == 200 and "no token" in page.text.lower()

    actor = f"cli:{getpass.getuser()}"
    async with db.sessions() as session:
        entries = list(await session.scalars(select(AuditEntry).where(AuditEntry.actor == actor)))
    assert [(e.action, e.target) for e in entries] == [
        ("supervisor_created", "supervisor:mei"),
        ("account_created", "account:87654321"),
    ]
    assert not any("135790" in repr(e.detail) or "password" in repr(e.detail) for e in entries)


async def test_the_backend_looks_for_new_recordings_by_itself(
    backend: RunningBackend, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("backend.console.recordings.FIND_EVERY", 0.05)  # not every minute
    [call_id] = await seed_calls(db, 1, datetime.now(UTC) - timedelta(minutes=5))
    recorded = await _call_by_id(db, call_id)
    running = await start_backend(backend.settings)  # its background look starts with it
    try:
        write_tone_wav(backend.settings.recordings_dir / f"{recorded.uniqueid}.wav", seconds=1)
        for _ in range(200):
            async with db.sessions() as session:
                found = await session.scalar(select(Recording).where(Recording.call_id == call_id))
            if found is not None:
                break
            await asyncio.sleep(0.05)
    finally:
        await running.stop()
    assert found is not None and found.file_name == f"{recorded.uniqueid}.wav"
    assert found.size_bytes > 8000  # a second of 8 kHz 16-bit audio and its header


async def test_new_recordings_on_disk_are_noted_for_the_list(
    console: ConsoleFactory, db: Database, backend
) -> None:
    from backend.console.recordings import note_new_recordings

    ids = await seed_calls(db, 3, datetime.now(UTC) - timedelta(hours=1))
    recorded = await _call_by_id(db, ids[1])
    write_tone_wav(backend.settings.recordings_dir / f"{recorded.uniqueid}.wav", seconds=1)
    client = await console("supervisor")
    assert listed_ids((await client.get("/console/calls?recording=yes")).text) == []
    assert await note_new_recordings(db) == 1  # what the backend does every minute
    assert await note_new_recordings(db) == 0
    assert listed_ids((await client.get("/console/calls?recording=yes")).text) == [ids[1]]
    page = await client.get("/console/calls?recording=no")
    assert sorted(listed_ids(page.text)) == sorted([ids[0], ids[2]])
