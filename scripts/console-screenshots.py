"""Screenshots of the supervisors' console, made in headless chromium from a real run:

    .venv/bin/python scripts/console-screenshots.py [--out var/screenshots]

Starts the backend (a throwaway SQLite database) and the FastAGI server on loopback, places the
demo's bundling call, adds a day of varied calls around it, signs in as an auditor and writes
calls.png (the list), call.png (the call's page, playing its recording), calls-phone.png (the
list on a phone-sized screen) and summary.png. Needs Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend import admin  # noqa: E402
from backend.app import start_backend  # noqa: E402
from backend.console.auth import create_supervisor  # noqa: E402
from backend.console.recordings import note_new_recordings  # noqa: E402
from backend.database import open_database  # noqa: E402
from backend.models import Call  # noqa: E402
from backend.settings import BackendSettings  # noqa: E402
from backend.sms import MemorySender  # noqa: E402
from cli.demo import DEMO_ACCOUNT, DEMO_PASSWORD, DEMO_VEHICLE, demo_keys, token_then_sms  # noqa: E402
from cli.phone import token_device  # noqa: E402
from harness.browser import Browser, start_chromium  # noqa: E402
from harness.console import write_tone_wav  # noqa: E402
from ivr.server import start_agi_server  # noqa: E402
from ivr.settings import IvrSettings  # noqa: E402
from simulator import has_sounds, place_call, render_call  # noqa: E402

NAME, PASSWORD = "otto", "screenshots-only-password"
SOUNDS = Path("var/sounds")
VARIETY = [  # (outcome, hotline, language, last stage): a plausible mix of a morning
    ("completed", "39023333", "zh_HK", "goodbye"),
    ("completed", "31532265", "zh_HK", "goodbye"),
    ("caller_hung_up", "39023333", "zh_HK", "bundle"),
    ("completed", "39023333", "en", "goodbye"),
    ("login_failed", "39023333", "zh_CN", "login"),
    ("completed", "31532265", "zh_HK", "goodbye"),
    ("too_many_errors", "39023333", "zh_HK", "vehicle"),
    ("completed", "39023333", "zh_CN", "goodbye"),
]


async def make_screenshots(out: Path) -> list[Path]:
    work = Path(tempfile.mkdtemp(prefix="ivrs-screens-"))
    settings = BackendSettings(
        database_url=f"sqlite+aiosqlite:///{work / 'ivrs.db'}",
        secret_key=Fernet.generate_key(),
        recordings_dir=work / "recordings",
        argon2_profile="test",
        console_plain_http=True,
        port=0,
    )
    sms = MemorySender()
    backend = await start_backend(settings, "127.0.0.1", 0, sms_sender=sms)
    ivr_settings = replace(IvrSettings(), backend_url=backend.url, api_token=settings.api_token)
    agi = await start_agi_server(ivr_settings, port=0)
    driver = start_chromium(window=(1280, 1500))
    browser = Browser(driver)
    try:
        async with open_database(settings) as db:
            await create_supervisor(db, NAME, "auditor", PASSWORD)
            await admin.create_account(db, DEMO_ACCOUNT, DEMO_PASSWORD, needs_activation=True)
            seed = await admin.add_token(
                db, DEMO_ACCOUNT, kind="hardware", digits=6, period=60, expires_on=date(2029, 4, 30)
            )
            await admin.add_vehicle(db, DEMO_VEHICLE)
            ccrns = [await admin.lodge_cargo(db) for _ in range(2)]
            record = await place_call(
                agi.host,
                agi.port,
                keys=demo_keys(ccrns),
                args=("39023333",),
                caller_id="85291234567",
                totp=token_then_sms(token_device(seed, 6, 60), sms),
                sounds_dir=SOUNDS if has_sounds(SOUNDS) else None,
            )
            recording = settings.recordings_dir / f"{record.uniqueid}.wav"
            if has_sounds(SOUNDS):
                render_call(record, SOUNDS, recording)
            else:
                write_tone_wav(recording, seconds=20)
            async with db.sessions.begin() as session:
                now = db.now()
                session.add_all(
                    Call(
                        uniqueid=f"17954{i:05d}.{i}",
                        hotline=hotline,
                        caller_id=f"8529{1000000 + i * 7919:07d}",
                        channel=f"PJSIP/trunk-{i:08x}",
                        language=language,
                        started_at=now - timedelta(minutes=7 * i + 3),
                        ended_at=now - timedelta(minutes=7 * i + 1),
                        outcome=outcome,
                        last_stage=stage,
                        account_number=f"{20000000 + i * 37:08d}"
                        if outcome != "login_failed"
                        else None,
                    )
                    for i, (outcome, hotline, language, stage) in enumerate(VARIETY * 3, start=1)
                )
            await note_new_recordings(db)  # as the backend's background look would
            async with db.sessions() as session:
                call_id = await session.scalar(
                    select(Call.id).where(Call.uniqueid == record.uniqueid)
                )

        base = backend.url
        await browser.open(f"{base}/console/sign-in")
        await browser.type("input[name=name]", NAME)
        await browser.type("input[name=password]", PASSWORD)
        await browser.click("form button[type=submit]")
        await browser.wait_until("document.location.pathname == '/console/calls'")
        shots = [await browser.screenshot(out / "calls.png")]
        await browser.open(f"{base}/console/calls/{call_id}")
        await browser.script("document.getElementById('recording').play()")
        await browser.wait_until("document.getElementById('recording').currentTime > 1")
        await browser.script("document.getElementById('recording').pause()")
        shots.append(await browser.screenshot(out / "call.png"))
        await browser.open(f"{base}/console/summary")
        shots.append(await browser.screenshot(out / "summary.png"))
        await browser.call(driver.set_window_size, 390, 1100)
        await browser.open(f"{base}/console/calls")
        shots.append(await browser.screenshot(out / "calls-phone.png"))
        return shots
    finally:
        await browser.call(driver.quit)
        await agi.stop(grace=2)
        await backend.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("var/screenshots"))
    args = parser.parse_args()
    for shot in asyncio.run(make_screenshots(args.out)):
        print(shot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
