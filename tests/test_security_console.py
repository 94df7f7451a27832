"""The hostile review's console findings (docs/security.md, rows 3, 4, 11, 12): the real backend
over HTTP, a simulated Asterisk manager (AMI) for listening in."""

# ruff: noqa: F811  (the fixtures imported from tests.support.console are used as arguments)
from __future__ import annotations

import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from ami_client import AmiError, listen_in
from backend.console.listen import AMI
from backend.database import Database
from backend.models import AuditEntry, Call
from harness.console import seed_calls, write_tone_wav
from tests.support.console import (  # noqa: F401  (fixtures)
    PASSWORD,
    ConsoleFactory,
    WithAmi,
    backend_settings,
    console,
    on_asterisk,
    supervisors,
    with_ami,
)


async def post_api(backend, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {backend.settings.api_token}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(backend.url + path, json=body, headers=headers) as response:
            return response.status, await response.json()


async def audited(db: Database, action: str) -> int:
    async with db.sessions() as session:
        return len(
            list(await session.scalars(select(AuditEntry).where(AuditEntry.action == action)))
        )


# --- row 3: every download that delivers the first byte is audited ----------------------------


@pytest.mark.parametrize("spelling", ["bytes=-99999999", "bytes=00-", "bytes=0000-", None])
async def test_a_download_is_audited_whatever_the_range_spelling(
    console: ConsoleFactory, db: Database, backend, spelling: str | None
) -> None:
    [call_id] = await seed_calls(db, 1, datetime(2026, 11, 2, tzinfo=UTC))
    async with db.sessions() as session:
        call = await session.get(Call, call_id)
    assert call is not None
    wav = write_tone_wav(backend.settings.recordings_dir / f"{call.uniqueid}.wav", seconds=1)
    client = await console("admin")
    page = await client.get(f"/console/calls/{call_id}")
    found = re.search(r'id="download" href="([^"]+)"', page.text)
    assert found is not None
    download = found.group(1).replace("&amp;", "&")

    headers = {"Range": spelling} if spelling else {}
    status, body, _ = await client.get_bytes(download, headers=headers)
    assert status in (200, 206) and body == wav.read_bytes()  # the whole file ...
    assert await audited(db, "recording_downloaded") == 1  # ... audited
    status, body, _ = await client.get_bytes(download, headers={"Range": "bytes=100-"})
    assert status == 206 and body == wav.read_bytes()[100:]  # a resumed download: no entry
    assert await audited(db, "recording_downloaded") == 1
    status, body, _ = await client.get_bytes(download, headers=headers)  # the ticket again
    assert body == wav.read_bytes() and await audited(db, "recording_downloaded") == 2


# --- row 4: channel names, AMI fields and listening in ----------------------------------------


@pytest.mark.parametrize(
    "channel",
    [
        "PJSIP/,wB",  # ChanSpy options smuggled in: whisper and barge
        "PJSIP/",  # ChanSpy takes a prefix: every PJSIP channel
        "PJSIP/x\r\nAction: Command\r\nCommand: core stop now",
        "PJSIP/x\nAction: Command",
        "PJSIP/a b",
        "not a channel",
    ],
)
async def test_a_call_with_a_channel_asterisk_would_not_make_is_refused(
    backend, channel: str
) -> None:
    opening = {"uniqueid": "1700000000.1", "hotline": "39023333", "channel": channel}
    status, body = await post_api(backend, "/v1/calls", opening)
    assert status == 422 and body["error"]["code"] == "invalid_request"
    assert channel not in str(body)


async def test_real_channel_names_are_taken(backend) -> None:
    for n, channel in enumerate(
        ["PJSIP/carrier-0000002a", "Local/201@ivrs-supervisors-00000002;1", "DAHDI/1-1"]
    ):
        opening = {"uniqueid": f"1700000000.{n}", "hotline": "39023333", "channel": channel}
        status, _ = await post_api(backend, "/v1/calls", opening)
        assert status == 201


async def test_cr_lf_and_commas_never_reach_ami(with_ami: WithAmi) -> None:
    ami = with_ami.backend.app[AMI]
    assert ami is not None
    for channel in ("PJSIP/x\r\nAction: Command", "PJSIP/,wB", "PJSIP/"):
        with pytest.raises(AmiError):
            await listen_in(ami, channel, "201", "ivrs-supervisors")
    with pytest.raises(AmiError):
        await ami.send({"Action": "Command", "Command": "core show version\r\nAction: Logoff"})
    assert not [a for a in with_ami.ami.actions if a.get("Action") in ("Originate", "Command")]


async def test_listening_in_only_to_a_call_live_on_asterisk(
    with_ami: WithAmi, console: ConsoleFactory, db: Database
) -> None:
    """A call open in the table (here one stored before names were checked, with a bad one)
    that Asterisk does not have is not listened to: no Originate; a live one is, by the name
    Asterisk gives its channel."""
    ami = with_ami.ami
    started = datetime.now(UTC) - timedelta(minutes=2)
    [stale] = await seed_calls(db, 1, started, live=True, channel="PJSIP/,wB")
    [live] = await seed_calls(db, 1, started, live=True, channel="PJSIP/hk-0001a", hotline="2")
    client = await console()
    client.url = with_ami.backend.url
    await client.sign_in("sam")
    async with on_asterisk(ami, "PJSIP/hk-0001a"):
        await client.get("/console/live")  # the page's CSRF token
        refused = await client.post(f"/console/live/{stale}/listen")
        assert "That call has ended" in refused.text
        assert not [a for a in ami.actions if a.get("Action") == "Originate"]
        page = await client.post(f"/console/live/{live}/listen")
        assert "Your phone is ringing" in page.text
    [originate] = [a for a in ami.actions if a.get("Action") == "Originate"]
    assert originate["Data"] == "PJSIP/hk-0001a,qES"
    page = await client.post(f"/console/live/{live}/listen")  # Asterisk no longer has it
    assert "That call has ended" in page.text
    assert len([a for a in ami.actions if a.get("Action") == "Originate"]) == 1


# --- row 11: dates out of range -----------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/console/summary?day=9999-12-31",
        "/console/summary?day=0001-01-01",
        "/console/audit?day=0001-01-01",
        "/console/audit?day=9999-12-31",
        "/console/calls?from=0001-01-01T00:00",
        "/console/calls?to=9999-12-31T23:59",
    ],
)
async def test_a_date_out_of_range_is_a_bad_request(console: ConsoleFactory, path: str) -> None:
    client = await console("auditor")
    page = await client.get(path)
    assert page.status == 400 and "Dates run from 1900-01-01 to 9998-12-31" in page.text


# --- row 12: files and the sign-in form ----------------------------------------------------


def modes(database: str, spool: str) -> tuple[int, int, set[int]]:
    spooled = {stat.S_IMODE(os.stat(f).st_mode) for f in Path(spool).iterdir()}
    mode = stat.S_IMODE(os.stat(database).st_mode)
    return mode, stat.S_IMODE(os.stat(spool).st_mode), spooled


async def test_the_database_and_spool_are_the_owners_only(backend, ivr) -> None:
    database = make_url(backend.settings.database_url).database
    assert database
    assert modes(database, ivr.app.settings.spool_dir) == (0o600, 0o700, {0o600})


async def test_the_sign_in_form_token_must_be_the_servers(
    console: ConsoleFactory, db: Database
) -> None:
    client = await console()
    made_up = "attacker-chosen-token"
    form = {"name": "sam", "password": PASSWORD, "csrf_token": made_up}
    url = client.url + "/console/sign-in"
    cookies = {"Cookie": f"ivrs_console_sign_in={made_up}"}
    async with client.http.post(url, data=form, headers=cookies) as response:
        assert response.status == 403
    assert await audited(db, "signed_in") == 0
    page = await client.sign_in("sam")  # the form's own token
    assert page.url.endswith("/console/calls")
