"""`ivrs demo` (`make demo`): the whole product on embedded defaults, in one process.

Starts the backend (SQLite under var/) and the FastAGI server on loopback, creates a migrated
demo account with a hardware token and lodged cargo, then places a simulated first call: it
logs in with the token's current code, registers a mobile with the code the SMS brought,
accepts the terms, bundles two CCRNs to a vehicle and checks the bundle, printing what the
caller hears."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from backend import admin, bundling
from backend.admin.common import account_by_number
from backend.app import start_backend
from backend.console.auth import create_supervisor
from backend.database import open_database
from backend.models import SupervisorRole
from backend.settings import BackendSettings
from backend.sms import MemorySender
from cli.logs import configure_logging
from cli.main import ivr_settings
from cli.phone import print_heard, token_device
from formats import keypad_keys
from ivr.server import start_agi_server
from simulator import has_sounds, place_call, recording_path, render_call

DEMO_ACCOUNT = "12345678"
DEMO_PASSWORD = "246810"
DEMO_VEHICLE = "AB1234"
DEMO_MOBILE = "91234567"
DEMO_SUPERVISORS: dict[str, SupervisorRole] = {"demo-admin": "admin", "demo-auditor": "auditor"}
HONG_KONG = ZoneInfo("Asia/Hong_Kong")
SOUNDS = Path(os.environ.get("IVRS_SOUNDS_DIR", "var/sounds"))


def demo_keys(ccrns: list[str]) -> str:
    """English; account, password, token code; mobile, confirm, SMS code; accept the terms;
    bundle (straight after login): vehicle AB1234, two CCRNs (each read back with the next
    question), submit; another vehicle, then `*` to the other services; check the vehicle
    (offered as the recent one); end the call."""
    letters = "".join(keypad_keys(c) for c in DEMO_VEHICLE if c.isalpha())
    digits = "".join(c for c in DEMO_VEHICLE if c.isdigit())
    first, second = ccrns
    return (
        f"3 {DEMO_ACCOUNT}# {DEMO_PASSWORD}# {{totp}}# {DEMO_MOBILE}# 1 {{totp}}# 1 "
        f"{letters}# {digits}# 1 {first}# 1 {second}# 2 1 * 3 1 9"
    )


def token_then_sms(token: Callable[[], str], sms: MemorySender) -> Callable[[], str]:
    """The phone's `{totp}`: the security token's code at login, then the SMS code."""
    typed: list[str] = []

    def code() -> str:
        typed.append(token() if not typed else sms.last_code(DEMO_MOBILE) or "")
        return typed[-1]

    return code


def port_or_free(host: str, port: int) -> int:
    """The configured port if it is free, else 0 (any free port): a demo should not fail
    because something else already listens on 8080."""
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return 0
    return port


async def demo(keep_running: bool = False) -> int:
    configure_logging(level=os.environ.get("IVRS_LOG_LEVEL", "warning"), fmt="console")
    db_file = Path("var/demo.db")
    db_file.parent.mkdir(exist_ok=True)
    for stale in (db_file, Path("var/demo.db-wal"), Path("var/demo.db-shm")):
        stale.unlink(missing_ok=True)  # each demo starts from an empty database
    settings = replace(
        BackendSettings.from_env(),
        database_url=f"sqlite+aiosqlite:///{db_file}",
        console_plain_http=True,  # the console on http://127.0.0.1: cookies without Secure
    )
    sms = MemorySender()  # the demo's "phone network": the caller reads the code from it
    backend = await start_backend(
        settings, settings.host, port_or_free(settings.host, settings.port), sms_sender=sms
    )
    agi_settings = replace(
        ivr_settings("demo"), backend_url=backend.url, api_token=settings.api_token
    )
    agi = await start_agi_server(
        agi_settings, port=port_or_free(agi_settings.agi_host, agi_settings.agi_port)
    )
    try:
        async with open_database(settings) as db:
            # Migrated from ROCARS: the first call registers a mobile and accepts the terms.
            await admin.create_account(db, DEMO_ACCOUNT, DEMO_PASSWORD, needs_activation=True)
            seed = await admin.add_token(
                db, DEMO_ACCOUNT, kind="hardware", digits=6, period=60, expires_on=date(2029, 4, 30)
            )
            await admin.add_vehicle(db, DEMO_VEHICLE)
            ccrns = [await admin.lodge_cargo(db) for _ in range(2)]
            console_password = secrets.token_urlsafe(12)  # a new one each demo
            for name, role in DEMO_SUPERVISORS.items():
                await create_supervisor(db, name, role, console_password)

        print("Road Cargo IVRS demo")
        print(f"  backend      {backend.url}  (database {db_file})")
        print(f"  FastAGI      agi://{agi.host}:{agi.port}/ivrs")
        print(f"  account      {DEMO_ACCOUNT}, password {DEMO_PASSWORD}, hardware token,")
        print("               migrated: first call registers a mobile and accepts the terms")
        print(f"  cargo        {', '.join(ccrns)} (lodged)")
        print(f"  console      {backend.url}/console  (sign in as {' or '.join(DEMO_SUPERVISORS)},")
        print(f"               password {console_password}; admin: accounts, auditor: audit log)")
        keys = demo_keys(ccrns)
        print(f"  keys         {keys}")
        print("               ({totp}: the token's current code, then the code the SMS brought)")
        print("\n--- the call, as the caller hears it " + "-" * 40)
        record = await place_call(
            agi.host,
            agi.port,
            keys=keys,
            args=("39023333",),
            caller_id="85291234567",
            totp=token_then_sms(token_device(seed, 6, 60), sms),
            on_heard=print_heard,
            sounds_dir=SOUNDS if has_sounds(SOUNDS) else None,
        )
        print("-" * 78)

        async with open_database(settings) as db:  # the call's login session ended with it
            async with db.sessions() as session:
                account = await account_by_number(session, DEMO_ACCOUNT)  # made above
            bundles = await bundling.list_bundles(db, account.id, DEMO_VEHICLE)
        if not bundles:
            print("No bundle was made: see the call above.")
            return 1
        b = bundles[0]
        crossing = b.earliest_crossing.astimezone(HONG_KONG)
        heard_reference = b.reference in "".join(h.text for h in record.heard).replace(" ", "")
        print("\nBundle stored in the backend:")
        print(
            f"  reference          {b.reference}"
            + ("  (read back to the caller)" if heard_reference else "")
        )
        print(f"  vehicle            {b.vehicle_mark}")
        print(f"  CCRNs              {', '.join(bundling.active_ccrns(b))}")
        print(f"  earliest crossing  {crossing:%Y-%m-%d %H:%M} Hong Kong time")
        print(f"  call               {record.uniqueid}, {len(record.exchanges)} AGI commands")
        if has_sounds(SOUNDS):
            recording = render_call(record, SOUNDS, recording_path(record))
            print(f"  recording          {recording} (recording paused while secrets are keyed)")
        else:
            print("  recording          none: build the prompts first (ivrs prompts build)")
        print("\nSMS sent (codes masked):")
        for message in sms.sent:
            text = message.text
            if message.kind == "sms_code":
                text = re.sub(r"\d{6}", "******", text)
            print(f"  {message.mobile}  {text}")

        if keep_running:
            print(
                f"\nServers left running. The console: {backend.url}/console\n"
                f"Call again with:\n"
                f"  IVRS_AGI_PORT={agi.port} .venv/bin/ivrs call --totp-seed {seed}\n"
                "Press Ctrl+C to stop them."
            )
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
        return 0
    finally:
        await agi.stop(grace=2)
        await backend.stop()
