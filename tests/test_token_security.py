"""Token and account security in the backend: seed and account imports (all or nothing),
FortiToken Mobile enrolment, resynchronisation, unlock and password reset, the per-caller
throttle, the same work for unknown accounts, and the canary: a full call whose password,
token code and SMS code must appear nowhere (logs, call events, call log, SMS outbox, HTTP
replies, the database: a dump of every table, and the SQLite file itself).

The backend runs for real (conftest: HTTP on loopback, a TestClock), on SQLite and on
PostgreSQL (tests/support/databases.py): the throttle's upsert and the imports' checks are SQL
of both.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import argon2
import pytest
import structlog
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

import otp
from backend import admin
from backend.admin import AdminError
from backend.app import RunningBackend
from backend.callers import caller_key
from backend.database import Database
from backend.errors import BackendError
from backend.login import login
from backend.models import Account, Base, Call, CallerThrottle, CallEvent, SmsOutbox, Token
from backend.settings import BackendSettings
from backend.sms import MemorySender
from cli.logs import PROCESSORS
from tests.support.databases import DATABASES
from tests.support.pskc import (
    RFC6030_FIGURE_6,
    RFC6030_FIGURE_7,
    RFC6030_PASSWORD,
    RFC6030_PSK,
    plain_totp_container,
)
from tests.support.stored import stored_call
from tests.support.truckers import TestClock as Clock

PASSWORD = "246810"
RFC_KEY = b"12345678901234567890"
MOBILE8 = otp.TokenProfile("mobile", digits=8, period=30)
ACCOUNTS_HEADER = "number,password_hash_or_initial_password,token_serial,type,services"
SEED_HEADER = "serial,key,type,digits,period,expiry"
THROTTLED_AFTER = 3  # failures from one caller number within the window (set below)


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend_settings(backend_settings: BackendSettings) -> BackendSettings:
    """conftest's settings, with a small caller throttle so its tests stay short."""
    return replace(
        backend_settings,
        caller_throttle_failures=THROTTLED_AFTER,
        caller_throttle_window=timedelta(minutes=10),
        caller_throttle_period=timedelta(minutes=20),
    )


# --- helpers ----------------------------------------------------------------------------------


async def attempt(
    db: Database, number: str, password: str, code: str, caller_id: str | None = None
) -> str:
    """'ok', or the error code the caller would hear."""
    try:
        await login(db, number, password, code, caller_id=caller_id)
    except BackendError as e:
        return e.code
    return "ok"


async def new_account(db: Database, number: str, **options: Any) -> str:
    """An account with a hardware token; returns the token's seed."""
    await admin.create_account(db, number, PASSWORD, **options)
    return await admin.add_token(db, number, serial=f"FTK{number}")


def seed_bytes(seed_base32: str) -> bytes:
    return base64.b32decode(seed_base32 + "=" * (-len(seed_base32) % 8))


def hardware_code(seed: str, clock: Clock, steps: int = 0) -> str:
    return otp.current_code(seed, otp.HARDWARE, clock.now() + timedelta(seconds=60 * steps))


async def all_tokens(db: Database) -> dict[str, Token]:
    async with db.sessions() as session:
        return {t.serial: t for t in await session.scalars(select(Token))}


async def account_row(db: Database, number: str) -> Account:
    async with db.sessions() as session:
        account = await session.scalar(select(Account).where(Account.number == number))
        assert account is not None
        return account


async def count(db: Database, model: type[Any]) -> int:
    async with db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


async def database_bytes(db: Database) -> bytes:
    """A dump of every row of every table; on SQLite also the raw file with its write-ahead
    log, everything the database holds on disk."""
    async with db.sessions() as session:
        dump = [
            repr(tuple(row))
            for table in Base.metadata.sorted_tables
            for row in await session.execute(select(table))
        ]
    raw = b""
    url = make_url(db.settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        path = Path(url.database)
        raw = b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))
    return "\n".join(dump).encode() + b"\n" + raw


def seed_csv(*rows: str) -> bytes:
    return ("\n".join([SEED_HEADER, *rows]) + "\n").encode()


def accounts_csv(*rows: str) -> bytes:
    return ("\n".join([ACCOUNTS_HEADER, *rows]) + "\n").encode()


# --- seed file import -------------------------------------------------------------------------


async def test_hex_and_base32_seeds_are_imported_encrypted_and_unassigned(
    db: Database, clock: Clock
) -> None:
    other_key = bytes(range(1, 21))
    data = seed_csv(
        f"FTK200000001,{RFC_KEY.hex()},totp,6,60,2029-04-30",
        f"FTK200000002,base32:{base64.b32encode(other_key).decode()},totp,6,60,",
    )
    assert await admin.import_tokens(db, data) == ["FTK200000001", "FTK200000002"]
    tokens = await all_tokens(db)
    for serial, key in (("FTK200000001", RFC_KEY), ("FTK200000002", other_key)):
        token = tokens[serial]
        assert (token.account_id, token.status, token.kind) == (None, "active", "hardware")
        assert seed_bytes(db.seeds.decrypt(token.seed_encrypted)) == key
    stored = await database_bytes(db)
    for key in (RFC_KEY, other_key):
        b32 = base64.b32encode(key).rstrip(b"=")
        assert key not in stored and key.hex().encode() not in stored and b32 not in stored

    # Assigned to an account, the imported hex seed gives the codes of RFC 6238's token.
    await admin.create_account(db, "40000001", PASSWORD)
    await admin.assign_token(db, "FTK200000001", "40000001")
    code = otp.current_code(base64.b32encode(RFC_KEY).decode(), otp.HARDWARE, clock.now())
    assert await attempt(db, "40000001", PASSWORD, code) == "ok"


async def test_seed_file_with_a_bad_row_imports_nothing(db: Database) -> None:
    data = seed_csv(
        f"FTK200000001,{RFC_KEY.hex()},totp,6,60,2029-04-30",
        f"FTK200000002,{RFC_KEY.hex()},totp,6,60,2029-04-30",
        f"FTK200000003,{RFC_KEY.hex()[:-1]}x,totp,6,60,2029-04-30",
        f"FTK200000004,{RFC_KEY.hex()},totp,6,60,2029-04-30",
    )
    with pytest.raises(AdminError) as caught:
        await admin.import_tokens(db, data)
    message = str(caught.value)
    assert message.startswith("nothing imported") and "line 4: key: not hex" in message
    assert RFC_KEY.hex()[:-1] not in message
    assert await count(db, Token) == 0


async def test_seed_file_with_a_known_serial_imports_nothing(db: Database) -> None:
    await admin.add_token(db, None, serial="FTK200000001")
    data = seed_csv(
        f"FTK200000002,{RFC_KEY.hex()},totp,6,60,", f"FTK200000001,{RFC_KEY.hex()},totp,6,60,"
    )
    with pytest.raises(AdminError, match="line 3: token FTK200000001 already exists"):
        await admin.import_tokens(db, data)
    assert set(await all_tokens(db)) == {"FTK200000001"}


# --- event tokens (HOTP) ----------------------------------------------------------------------

HOTP6 = otp.TokenProfile("hardware", digits=6, period=None, type="hotp")
HOTP8 = otp.TokenProfile("hardware", digits=8, period=None, type="hotp")
RFC_B32 = base64.b32encode(RFC_KEY).decode()


def hotp_code(counter: int, profile: otp.TokenProfile = HOTP6) -> str:
    return otp.counter_code(RFC_B32, profile, counter)


async def hotp_account(db: Database, number: str = "40000001") -> None:
    """An account holding the imported event token HOTP0001 (RFC 4226's seed)."""
    data = seed_csv(f"HOTP0001,{RFC_KEY.hex()},hotp,6,,", f"FTK1,{RFC_KEY.hex()},totp,6,60,")
    assert await admin.import_tokens(db, data) == ["HOTP0001", "FTK1"]
    await admin.create_account(db, number, PASSWORD)
    await admin.assign_token(db, "HOTP0001", number)


async def test_an_event_token_logs_in_with_its_counter_and_refuses_a_replay(
    db: Database,
) -> None:
    await hotp_account(db)
    tokens = await all_tokens(db)
    hotp, totp = tokens["HOTP0001"], tokens["FTK1"]
    assert (hotp.type, hotp.period, hotp.counter, hotp.last_used_step) == ("hotp", None, 0, None)
    assert (totp.type, totp.period, totp.counter) == ("totp", 60, None)
    assert await attempt(db, "40000001", PASSWORD, hotp_code(0)) == "ok"  # 755224, RFC 4226
    assert await attempt(db, "40000001", PASSWORD, hotp_code(0)) == "login_failed"  # replay
    # Presses that never reached a login: the look-ahead window still finds the code.
    assert await attempt(db, "40000001", PASSWORD, hotp_code(5)) == "ok"
    assert await attempt(db, "40000001", PASSWORD, hotp_code(3)) == "login_failed"  # earlier
    assert (await all_tokens(db))["HOTP0001"].counter == 6  # the next one expected
    too_far = 5 + otp.HOTP_LOOK_AHEAD + 1
    assert await attempt(db, "40000001", PASSWORD, hotp_code(too_far)) == "login_failed"


async def test_an_event_token_far_ahead_is_resynchronised_from_two_consecutive_codes(
    db: Database,
) -> None:
    await hotp_account(db)
    assert await attempt(db, "40000001", PASSWORD, hotp_code(300)) == "login_failed"
    assert await admin.resync_token(db, "HOTP0001", hotp_code(300), hotp_code(301)) == 300
    token = (await all_tokens(db))["HOTP0001"]
    assert (token.counter, token.last_used_step, token.drift) == (302, None, 0)
    assert await attempt(db, "40000001", PASSWORD, hotp_code(301)) == "login_failed"  # used
    assert await attempt(db, "40000001", PASSWORD, hotp_code(302)) == "ok"
    with pytest.raises(AdminError, match="within the next 1000 presses"):
        await admin.resync_token(db, "HOTP0001", hotp_code(100), hotp_code(101))  # before


async def test_a_password_protected_pskc_event_token_is_imported_and_logs_in(
    db: Database,
) -> None:
    """RFC 6030's figure 7 (PBKDF2 from "qwerty"): its 8-digit HOTP token at counter 0."""
    with pytest.raises(AdminError, match="wrong key or password"):
        await admin.import_tokens(db, RFC6030_FIGURE_7, password="qwertz")
    assert await count(db, Token) == 0
    assert await admin.import_tokens(db, RFC6030_FIGURE_7, password=RFC6030_PASSWORD) == [
        "987654321"
    ]
    await admin.create_account(db, "40000001", PASSWORD)
    await admin.assign_token(db, "987654321", "40000001")
    assert await attempt(db, "40000001", PASSWORD, hotp_code(0, HOTP8)) == "ok"  # 84755224


async def test_an_event_token_counter_from_a_pskc_file_is_where_logins_start(
    db: Database,
) -> None:
    counter_0 = b"<Counter><PlainValue>0</PlainValue></Counter>"
    container = RFC6030_FIGURE_6.replace(counter_0, counter_0.replace(b"0", b"7"))
    await admin.import_tokens(db, container, psk=RFC6030_PSK)
    token = (await all_tokens(db))["987654321"]
    assert (token.type, token.period, token.counter) == ("hotp", None, 7)
    await admin.create_account(db, "40000001", PASSWORD)
    await admin.assign_token(db, "987654321", "40000001")
    assert await attempt(db, "40000001", PASSWORD, hotp_code(6, HOTP8)) == "login_failed"
    assert await attempt(db, "40000001", PASSWORD, hotp_code(7, HOTP8)) == "ok"


async def test_pskc_seed_file_is_imported(db: Database) -> None:
    assert await admin.import_tokens(db, plain_totp_container("FTK299")) == ["FTK299"]
    token = (await all_tokens(db))["FTK299"]
    assert (token.digits, token.period, str(token.expires_on)) == (6, 60, "2029-04-30")


# --- account import (ROCARS migration) --------------------------------------------------------


async def import_two_tokens(db: Database) -> None:
    await admin.import_tokens(
        db,
        seed_csv(
            f"FTK200000001,{RFC_KEY.hex()},totp,6,60,2029-04-30",
            f"FTK200000002,{bytes(range(20)).hex()},totp,6,60,2029-04-30",
        ),
    )


async def test_account_import_keeps_argon2_hashes_and_hashes_initial_passwords(
    db: Database, clock: Clock
) -> None:
    await import_two_tokens(db)
    legacy_hasher = argon2.PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    legacy, quoted = legacy_hasher.hash("135790"), legacy_hasher.hash("135791")
    data = accounts_csv(
        f"11111111,{legacy},FTK200000001,trucker,road_bundling",  # commas of the hash unquoted
        "22222222,975310,FTK200000002,agent company,road_bundling",
        "33333333,864200,,shipper,",
        f'44444444,"{quoted}",,trucker,road_bundling',
    )
    numbers = ["11111111", "22222222", "33333333", "44444444"]
    assert await admin.import_accounts(db, data) == numbers
    first, second, third, fourth = [await account_row(db, n) for n in numbers]
    assert (first.password_hash, fourth.password_hash) == (legacy, quoted)
    assert second.password_hash.startswith("$argon2id$") and "975310" not in second.password_hash
    assert [(a.type, a.services, a.needs_activation) for a in (first, second, third)] == [
        ("trucker", ["road_bundling"], True),
        ("agent", ["road_bundling"], True),
        ("shipper", [], True),
    ]
    tokens = await all_tokens(db)
    assert tokens["FTK200000001"].account_id == first.id
    assert tokens["FTK200000002"].account_id == second.id

    # The migrated hash logs in; the next good login re-hashes it with our own parameters.
    code = otp.current_code(base64.b32encode(RFC_KEY).decode(), otp.HARDWARE, clock.now())
    assert await attempt(db, "11111111", "135790", code) == "ok"
    assert (await account_row(db, "11111111")).password_hash != legacy


async def test_account_import_with_a_bad_row_imports_nothing(db: Database) -> None:
    await import_two_tokens(db)
    data = accounts_csv(
        "11111111,975310,FTK200000001,trucker,road_bundling",
        "2222222,975311,,trucker,road_bundling",
        "33333333,$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW,,trucker,",
        "44444444,975312,FTK999,trucker,road_bundling",
        "55555555,975313,FTK200000001,lorry,road_bundling",
        "66666666,97531,,trucker,road_bundling",
        "77777777,975314,,trucker,road_bundling;bundling",
        "11111111,975315,FTK200000002,trucker,road_bundling",
    )
    with pytest.raises(AdminError) as caught:
        await admin.import_accounts(db, data)
    message = str(caught.value)
    for expected in (
        "line 3: number: an account number has 8 digits",
        "line 4: password: not an Argon2id/Argon2i hash",
        "line 6: type: trucker, agent or shipper",
        "line 7: password: an initial password has 6 to 12 digits",
        "line 8: services: unknown bundling",
        "line 9: account 11111111 repeats line 2",
        "line 5: no token FTK999 (import the seed file first)",
    ):
        assert expected in message, expected
    assert not re.search(r"97531\d", message), "a password was quoted"
    assert await count(db, Account) == 0
    assert all(t.account_id is None for t in (await all_tokens(db)).values())


async def test_account_import_refuses_a_token_that_is_assigned(db: Database) -> None:
    await import_two_tokens(db)
    await admin.create_account(db, "40000001", PASSWORD)
    await admin.assign_token(db, "FTK200000001", "40000001")
    data = accounts_csv("11111111,975310,FTK200000001,trucker,road_bundling")
    with pytest.raises(AdminError, match="line 2: token FTK200000001 is assigned to another"):
        await admin.import_accounts(db, data)
    assert await count(db, Account) == 1


async def test_assign_token_links_an_unassigned_token_only(db: Database) -> None:
    await import_two_tokens(db)
    for number in ("40000001", "40000002"):
        await admin.create_account(db, number, PASSWORD)
    await admin.assign_token(db, "FTK200000001", "40000001")
    with pytest.raises(AdminError, match="already assigned to 40000001"):
        await admin.assign_token(db, "FTK200000001", "40000001")
    with pytest.raises(AdminError, match="assigned to another account"):
        await admin.assign_token(db, "FTK200000001", "40000002")
    with pytest.raises(AdminError, match="no token FTK404"):
        await admin.assign_token(db, "FTK404", "40000002")


# --- FortiToken Mobile enrolment --------------------------------------------------------------


async def test_enrolment_is_activated_by_its_first_code_and_revokes_the_old_token(
    db: Database, clock: Clock
) -> None:
    old_seed = await new_account(db, "40000001")
    enrolment = await admin.enrol_mobile_token(db, "40000001", digits=8, period=30)
    assert enrolment.uri.startswith("otpauth://totp/Road%20Cargo%20IVRS:40000001?secret=")
    assert f"secret={enrolment.seed}&" in enrolment.uri and enrolment.seed not in repr(enrolment)
    assert (await all_tokens(db))[enrolment.serial].status == "pending"

    # Until the new token is used, the old one still logs in.
    assert await attempt(db, "40000001", PASSWORD, hardware_code(old_seed, clock)) == "ok"
    assert (await all_tokens(db))[enrolment.serial].status == "pending"

    clock.advance(60)
    new_code = otp.current_code(enrolment.seed, MOBILE8, clock.now())
    assert await attempt(db, "40000001", PASSWORD, new_code) == "ok"
    tokens = await all_tokens(db)
    assert tokens[enrolment.serial].status == "active"
    assert tokens["FTK40000001"].status == "revoked"
    assert tokens["FTK40000001"].revoked_at == clock.now()

    clock.advance(60)
    assert await attempt(db, "40000001", PASSWORD, hardware_code(old_seed, clock)) == (
        "login_failed"
    )
    assert (
        await attempt(
            db, "40000001", PASSWORD, otp.current_code(enrolment.seed, MOBILE8, clock.now())
        )
        == "ok"
    )


async def test_a_wrong_code_does_not_activate_an_enrolment(db: Database, clock: Clock) -> None:
    old_seed = await new_account(db, "40000001")
    enrolment = await admin.enrol_mobile_token(db, "40000001")
    wrong = otp.current_code(enrolment.seed, otp.MOBILE, clock.now() + timedelta(minutes=5))
    assert await attempt(db, "40000001", PASSWORD, wrong) == "login_failed"
    tokens = await all_tokens(db)
    assert (tokens[enrolment.serial].status, tokens["FTK40000001"].status) == (
        "pending",
        "active",
    )
    assert await attempt(db, "40000001", PASSWORD, hardware_code(old_seed, clock)) == "ok"


async def test_a_new_enrolment_revokes_one_never_activated(db: Database, clock: Clock) -> None:
    await new_account(db, "40000001")
    first = await admin.enrol_mobile_token(db, "40000001")
    second = await admin.enrol_mobile_token(db, "40000001")
    tokens = await all_tokens(db)
    assert (tokens[first.serial].status, tokens[second.serial].status) == ("revoked", "pending")
    code = otp.current_code(first.seed, otp.MOBILE, clock.now())
    assert await attempt(db, "40000001", PASSWORD, code) == "login_failed"


async def test_an_enrolment_never_activated_in_time_is_refused_then_revoked(
    db: Database, clock: Clock
) -> None:
    old_seed = await new_account(db, "40000001")
    late = await admin.enrol_mobile_token(db, "40000001")
    clock.advance(24 * 3600)  # the default expiry (settings.enrolment_expiry)
    code = otp.current_code(late.seed, otp.MOBILE, clock.now())
    assert await attempt(db, "40000001", PASSWORD, code) == "login_failed"
    tokens = await all_tokens(db)
    assert (tokens[late.serial].status, tokens[late.serial].revoked_at) == ("revoked", clock.now())
    assert tokens["FTK40000001"].status == "active"  # the old token is untouched, and works
    assert await attempt(db, "40000001", PASSWORD, hardware_code(old_seed, clock)) == "ok"


async def test_an_enrolment_activated_just_before_it_expires_logs_in(
    db: Database, clock: Clock
) -> None:
    await new_account(db, "40000001")
    enrolment = await admin.enrol_mobile_token(db, "40000001")
    clock.advance(24 * 3600 - 1)
    code = otp.current_code(enrolment.seed, otp.MOBILE, clock.now())
    assert await attempt(db, "40000001", PASSWORD, code) == "ok"
    assert (await all_tokens(db))[enrolment.serial].status == "active"


def test_the_enrolment_expiry_comes_from_the_environment() -> None:
    key = {"IVRS_SECRET_KEY": "x" * 43 + "="}
    settings = BackendSettings.from_env(key | {"IVRS_ENROLMENT_EXPIRY_SECONDS": "3600"})
    assert settings.enrolment_expiry == timedelta(hours=1)
    assert BackendSettings.from_env(key).enrolment_expiry == timedelta(hours=24)
    with pytest.raises(ValueError, match="ENROLMENT_EXPIRY"):
        BackendSettings.from_env(key | {"IVRS_ENROLMENT_EXPIRY_SECONDS": "0"})


async def test_enrolment_of_an_unknown_account_or_profile_is_refused(db: Database) -> None:
    with pytest.raises(AdminError, match="no account 40000009"):
        await admin.enrol_mobile_token(db, "40000009")
    await new_account(db, "40000001")
    with pytest.raises(AdminError, match="period is 30 or 60"):
        await admin.enrol_mobile_token(db, "40000001", period=45)


# --- revocation, resynchronisation, unlock, password reset ------------------------------------


async def test_a_revoked_token_no_longer_logs_in(db: Database, clock: Clock) -> None:
    seed = await new_account(db, "40000001")
    await admin.revoke_token(db, "FTK40000001")
    assert await attempt(db, "40000001", PASSWORD, hardware_code(seed, clock)) == "login_failed"
    with pytest.raises(AdminError, match="already revoked"):
        await admin.revoke_token(db, "FTK40000001")


async def test_resync_from_two_consecutive_codes_stores_the_drift(
    db: Database, clock: Clock
) -> None:
    seed = await new_account(db, "40000001")
    # The token's clock runs 5 steps (5 minutes) ahead: its codes are outside the ±1 window.
    assert await attempt(db, "40000001", PASSWORD, hardware_code(seed, clock, 5)) == (
        "login_failed"
    )
    first, second = hardware_code(seed, clock, 4), hardware_code(seed, clock, 5)
    assert await admin.resync_token(db, "FTK40000001", first, second) == 5
    token = (await all_tokens(db))["FTK40000001"]
    assert (token.drift, token.last_used_step) == (5, int(clock.now().timestamp()) // 60 + 5)
    # The codes read for the resync are used up; the token's next code logs in.
    assert await attempt(db, "40000001", PASSWORD, second) == "login_failed"
    clock.advance(60)
    assert await attempt(db, "40000001", PASSWORD, hardware_code(seed, clock, 5)) == "ok"


async def test_resync_with_codes_that_do_not_follow_each_other_changes_nothing(
    db: Database, clock: Clock
) -> None:
    seed = await new_account(db, "40000001")
    with pytest.raises(AdminError, match="no two consecutive codes"):
        await admin.resync_token(
            db, "FTK40000001", hardware_code(seed, clock, 1), hardware_code(seed, clock, 3)
        )
    token = (await all_tokens(db))["FTK40000001"]
    assert (token.drift, token.last_used_step) == (0, None)


async def test_unlock_lets_a_locked_account_in_at_once(db: Database, clock: Clock) -> None:
    seed = await new_account(db, "40000001")
    for _ in range(5):
        assert await attempt(db, "40000001", "135790", hardware_code(seed, clock)) == (
            "login_failed"
        )
    assert await attempt(db, "40000001", PASSWORD, hardware_code(seed, clock)) == "locked"
    await admin.unlock(db, "40000001")
    assert await attempt(db, "40000001", PASSWORD, hardware_code(seed, clock)) == "ok"


async def test_lockout_settings_are_honoured(
    db: Database, clock: Clock, backend_settings: BackendSettings
) -> None:
    strict = replace(db, settings=replace(db.settings, lockout_failures=2))
    seed = await new_account(db, "40000001")
    for _ in range(2):
        await attempt(strict, "40000001", "135790", hardware_code(seed, clock))
    assert await attempt(strict, "40000001", PASSWORD, hardware_code(seed, clock)) == "locked"
    clock.advance(15 * 60)
    assert await attempt(strict, "40000001", PASSWORD, hardware_code(seed, clock)) == "ok"


async def test_reset_password_replaces_the_old_password(db: Database, clock: Clock) -> None:
    seed = await new_account(db, "40000001")
    await admin.reset_password(db, "40000001", "97531086")
    assert await attempt(db, "40000001", PASSWORD, hardware_code(seed, clock)) == "login_failed"
    assert await attempt(db, "40000001", "97531086", hardware_code(seed, clock)) == "ok"
    assert "97531086" not in (await account_row(db, "40000001")).password_hash
    with pytest.raises(AdminError, match="6 to 12 digits"):
        await admin.reset_password(db, "40000001", "12ab56")


# --- the per-caller-number throttle -----------------------------------------------------------


def test_caller_numbers_are_counted_by_their_digits() -> None:
    assert caller_key("+852 9123 4567") == caller_key("0085291234567") == "91234567"
    assert caller_key("91234567") == "91234567"
    assert caller_key(None) == caller_key("") == caller_key("anonymous") == "anonymous"


async def test_one_caller_failing_on_many_accounts_is_refused_without_checks(
    db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeds = {n: await new_account(db, n) for n in ("40000001", "40000002", "40000003")}
    caller = "+852 6123 4567"
    wrong_password = hardware_code(seeds["40000001"], clock)
    assert await attempt(db, "40000001", "135790", wrong_password, caller) == "login_failed"
    assert await attempt(db, "49999999", PASSWORD, "123456", caller) == "login_failed"
    wrong_code = hardware_code(seeds["40000003"], clock, 5)
    assert await attempt(db, "40000003", PASSWORD, wrong_code, caller) == "login_failed"

    # Now even the right password and code are refused from that number (it is told so), and
    # nothing is checked.
    verified: list[str] = []
    original = type(db.passwords).verify

    async def spy(self: Any, password_hash: str | None, password: str) -> bool:
        verified.append("verify")
        return await original(self, password_hash, password)

    monkeypatch.setattr(type(db.passwords), "verify", spy)
    right = hardware_code(seeds["40000002"], clock)
    assert await attempt(db, "40000002", PASSWORD, right, "61234567") == "caller_throttled"
    assert verified == []
    assert (await account_row(db, "40000002")).failed_logins == 0  # the account is not charged

    # Another caller is not affected; the throttled one is let in after the period.
    assert await attempt(db, "40000002", PASSWORD, right, "91234567") == "ok"
    clock.advance(20 * 60)
    right = hardware_code(seeds["40000003"], clock)
    assert await attempt(db, "40000003", PASSWORD, right, caller) == "ok"
    assert verified == ["verify", "verify"]


async def test_failures_spread_beyond_the_window_do_not_throttle(
    db: Database, clock: Clock
) -> None:
    seed = await new_account(db, "40000001")
    for _ in range(THROTTLED_AFTER - 1):
        await attempt(db, "49999999", PASSWORD, "123456", "61234567")
    clock.advance(10 * 60)  # the window has passed: the count starts again
    for _ in range(THROTTLED_AFTER - 1):
        await attempt(db, "49999999", PASSWORD, "123456", "61234567")
    assert await attempt(db, "40000001", PASSWORD, hardware_code(seed, clock), "61234567") == "ok"


async def test_release_caller_lifts_the_throttle(db: Database, clock: Clock) -> None:
    seed = await new_account(db, "40000001")
    for _ in range(THROTTLED_AFTER):
        await attempt(db, "49999999", PASSWORD, "123456", "61234567")
    assert await admin.release_caller(db, "+85261234567")
    assert await count(db, CallerThrottle) == 0
    assert await attempt(db, "40000001", PASSWORD, hardware_code(seed, clock), "61234567") == "ok"


async def test_throttled_caller_number_is_told_so_over_http_and_nothing_of_the_account(
    backend: RunningBackend, db: Database, clock: Clock
) -> None:
    seed = await new_account(db, "40000001")
    headers = {"Authorization": f"Bearer {backend.settings.api_token}"}

    async def post(http: aiohttp.ClientSession, password: str) -> tuple[int, Any]:
        body = {
            "account": "40000001",
            "password": password,
            "token_code": hardware_code(seed, clock),
            "caller_id": "61234567",
        }
        async with http.post(f"{backend.url}/v1/sessions", json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async with aiohttp.ClientSession() as http:
        wrong = [await post(http, "135790") for _ in range(THROTTLED_AFTER)]
        throttled = await post(http, PASSWORD)
        clock.advance(5 * 60)
        later = await post(http, PASSWORD)
    # Each wrong try (and the account's lockout) hears only the generic failure ...
    assert {(s, b["error"]["code"]) for s, b in wrong} == {(401, "login_failed")}
    # ... the throttled number hears why and when to try again (the period: 20 minutes).
    assert throttled[0] == 429 and throttled[1]["error"]["code"] == "caller_throttled"
    assert throttled[1]["error"]["detail"] == {"retry_after_minutes": 20}
    assert later[1]["error"]["detail"] == {"retry_after_minutes": 15}
    assert "40000001" not in str(throttled[1])


def test_caller_throttle_settings_come_from_the_environment() -> None:
    key = {"IVRS_SECRET_KEY": "x" * 43 + "="}
    settings = BackendSettings.from_env(
        key
        | {
            "IVRS_CALLER_THROTTLE_FAILURES": "7",
            "IVRS_CALLER_THROTTLE_ANONYMOUS_FAILURES": "0",
            "IVRS_CALLER_THROTTLE_WINDOW_SECONDS": "600",
            "IVRS_CALLER_THROTTLE_PERIOD_SECONDS": "3600",
            "IVRS_LOCKOUT_FAILURES": "3",
            "IVRS_LOCKOUT_SECONDS": "1800",
        }
    )
    assert (settings.caller_throttle_failures, settings.caller_throttle_anonymous_failures) == (
        7,
        0,
    )
    assert settings.caller_throttle_window == timedelta(minutes=10)
    assert settings.caller_throttle_period == timedelta(hours=1)
    assert (settings.lockout_failures, settings.lockout_period) == (3, timedelta(minutes=30))
    defaults = BackendSettings.from_env(key)
    assert (defaults.caller_throttle_failures, defaults.lockout_failures) == (10, 5)
    with pytest.raises(ValueError, match="IVRS_CALLER_THROTTLE_FAILURES"):
        BackendSettings.from_env(key | {"IVRS_CALLER_THROTTLE_FAILURES": "ten"})
    with pytest.raises(ValueError, match="positive window"):
        BackendSettings.from_env(key | {"IVRS_CALLER_THROTTLE_WINDOW_SECONDS": "0"})


# --- the same work for unknown accounts -------------------------------------------------------


async def test_an_unknown_account_still_pays_one_argon2_verification(
    db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = await new_account(db, "40000001")
    checked: list[str] = []
    original = argon2.PasswordHasher.verify

    def spy(self: argon2.PasswordHasher, hash: str, password: str) -> bool:
        checked.append(hash)
        return original(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", spy)
    assert await attempt(db, "49999999", PASSWORD, hardware_code(seed, clock)) == "login_failed"
    assert await attempt(db, "40000001", "135790", hardware_code(seed, clock)) == "login_failed"
    decoy, real = checked
    assert decoy.startswith("$argon2id$") and decoy != real  # a real Argon2 check, not a skip
    assert real == (await account_row(db, "40000001")).password_hash


# --- the canary: a full call leaves its secrets nowhere ---------------------------------------

CANARY_ACCOUNT = "58204716"
CANARY_PASSWORD = "739164825017"  # distinctive: 12 digits appear nowhere by chance
CANARY_WRONG_PASSWORD = "602817395541"
CANARY_MOBILE = "91234567"


class StderrLogger:
    """Writes each rendered line to sys.stderr as it is at that moment (pytest swaps it between
    the phases of a test; a logger holding the old one would write to a closed file)."""

    def __init__(self, *args: Any) -> None:
        pass

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    info = debug = warning = warn = error = critical = exception = failure = fatal = log = msg


@dataclass
class LeakHunt:
    """Everything a call leaves behind, gathered for a search.

    structlog events are rendered as JSON to stderr (captured by capsys), and kept as event
    dicts by structlog's testing helper LogCapture, placed in front of the renderer
    (`structlog.testing.capture_logs` would keep the dicts but drop the rendering, which is
    what a log shipper sees). Stdlib logging is captured at DEBUG (caplog: SQLAlchemy,
    aiosqlite, aiohttp, asyncio). Every HTTP reply the IVR (or the test) reads is kept by
    wrapping aiohttp's ClientResponse.read.
    """

    db: Database
    capsys: pytest.CaptureFixture[str]
    caplog: pytest.LogCaptureFixture
    capture: structlog.testing.LogCapture = field(default_factory=structlog.testing.LogCapture)
    replies: list[str] = field(default_factory=list)
    printed: str = ""

    def start(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def keep(logger: Any, method: str, event_dict: Any) -> Any:
            try:
                self.capture(logger, method, dict(event_dict))
            except structlog.DropEvent:  # LogCapture ends the chain; this one goes on
                pass
            return event_dict

        saved = structlog.get_config()
        monkeypatch.setattr(structlog, "_hunt_saved_config", saved, raising=False)
        structlog.configure(
            processors=[*PROCESSORS, keep, structlog.processors.JSONRenderer()],
            wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
            logger_factory=StderrLogger,
            cache_logger_on_first_use=False,
        )
        self.caplog.set_level(logging.DEBUG)
        # The backend's line a request (at IVRS_LOG_LEVEL=debug only: cli/logs.py) is hunted too.
        self.caplog.set_level(logging.DEBUG, logger="aiohttp.access")

        read = aiohttp.ClientResponse.read
        replies = self.replies

        async def keeping_read(response: aiohttp.ClientResponse) -> bytes:
            body = await read(response)
            replies.append(f"{response.method} {response.url.path} {response.status} {body!r}")
            return body

        monkeypatch.setattr(aiohttp.ClientResponse, "read", keeping_read)

    @staticmethod
    def stop() -> None:
        structlog.configure(**structlog._hunt_saved_config)  # type: ignore[attr-defined]

    async def haystacks(self) -> dict[str, bytes]:
        out, err = self.capsys.readouterr()
        self.printed += out + err  # readouterr hands each output once: keep it for later calls
        records = [
            f"{r.name} {r.levelname} {r.getMessage()} {r.args!r} {r.__dict__!r}"
            for r in self.caplog.records
        ]
        async with self.db.sessions() as session:
            events = [
                (e.kind, e.name, e.detail, e.duration_ms)
                for e in await session.scalars(select(CallEvent))
            ]
            calls = [
                {c.key: getattr(row, c.key) for c in Call.__table__.columns}
                for row in await session.scalars(select(Call))
            ]
            outbox = [(m.mobile, m.kind, m.text) for m in await session.scalars(select(SmsOutbox))]
        text = {
            "structlog events": repr(self.capture.entries),
            "printed output (rendered logs)": self.printed,
            "stdlib logging": "\n".join([self.caplog.text, *records]),
            "call events": json.dumps(events, default=str),
            "call log": json.dumps(calls, default=str),
            "sms outbox": json.dumps(outbox),
            "http replies": "\n".join(self.replies),
        }
        found = {name: value.encode() for name, value in text.items()}
        found["database dump and file"] = await database_bytes(self.db)
        return found

    async def leaks(self, secrets: dict[str, str | bytes]) -> list[str]:
        """'<secret> in <where>: ...context...' for every occurrence; [] when clean."""
        hits = []
        for where, haystack in (await self.haystacks()).items():
            for name, secret in secrets.items():
                for match in re.finditer(pattern(secret), haystack):
                    context = haystack[max(0, match.start() - 60) : match.end() + 20]
                    hits.append(f"{name} in {where}: ...{context!r}...")
        return hits


def pattern(secret: str | bytes) -> bytes:
    """How a secret is searched for. Codes of 6 digits could occur by chance in a timestamp's
    microseconds or another number, so they must stand alone (not inside a longer number or
    a fraction); longer secrets are searched anywhere."""
    raw = secret.encode() if isinstance(secret, str) else secret
    if raw.isdigit() and len(raw) <= 6:
        return rb"(?<![\d.])" + re.escape(raw) + rb"(?!\d)"
    return re.escape(raw)


@pytest.fixture
def hunt(
    db: Database,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LeakHunt]:
    leak_hunt = LeakHunt(db, capsys, caplog)
    leak_hunt.start(monkeypatch)
    try:
        yield leak_hunt
    finally:
        leak_hunt.stop()


def typed_in_turn(*codes: Callable[[], str]) -> Callable[[], str]:
    """What `{totp}` types each time: the next of `codes` (computed when typed)."""
    queue = list(codes)
    return lambda: queue.pop(0)()


async def test_canary_a_full_call_leaves_no_secret_anywhere(
    db: Database, phone: Any, sms: MemorySender, clock: Clock, hunt: LeakHunt
) -> None:
    await admin.create_account(db, CANARY_ACCOUNT, CANARY_PASSWORD, needs_activation=True)
    seed = await admin.add_token(db, CANARY_ACCOUNT, kind="mobile", digits=8, period=30)
    token_code = otp.current_code(seed, MOBILE8, clock.now())
    typed: list[str] = []

    def remember(code: Callable[[], str]) -> Callable[[], str]:
        return lambda: typed.append(code()) or typed[-1]

    keys = (
        f"3 {CANARY_ACCOUNT} {CANARY_WRONG_PASSWORD}# {{totp}}# "  # a failed try first
        f"{CANARY_PASSWORD}# {{totp}}# "  # the account number is kept
        f"{CANARY_MOBILE} 1 {{totp}} "  # mobile, confirm, the SMS code (fixed lengths)
        "1 * 9"  # accept the terms, `*` from bundling to the main menu, end the call
    )
    totp = typed_in_turn(
        remember(lambda: token_code),
        remember(lambda: token_code),
        remember(lambda: sms.last_code(CANARY_MOBILE) or "none"),
    )
    record = await phone(keys, None, totp=totp)

    # The call really went through every secret: failed login, login, SMS code, terms, menu.
    assert "login.failed" in record.prompt_ids and "register.done" in record.prompt_ids
    assert "menu.main" in record.prompt_ids and record.prompt_ids[-1] == "call.goodbye"
    sms_code = typed[2]
    assert typed == [token_code, token_code, sms_code] and len(sms_code) == 6
    assert (await account_row(db, CANARY_ACCOUNT)).mobile is not None
    assert (await stored_call(db, record.uniqueid)).ended_at is not None

    secrets: dict[str, str | bytes] = {
        "password": CANARY_PASSWORD,
        "wrong password": CANARY_WRONG_PASSWORD,
        "token code": token_code,
        "sms code": sms_code,
        "token seed (base32)": seed,
        "token seed (hex)": seed_bytes(seed).hex(),
        "token seed (raw)": seed_bytes(seed),
    }
    haystacks = await hunt.haystacks()
    assert hunt.capture.entries and hunt.replies and hunt.caplog.records, "nothing was captured"
    assert b"login_failed" in haystacks["call events"] and b"***" in haystacks["call events"]
    assert await hunt.leaks(secrets) == []


async def test_canary_self_test_finds_a_secret_wherever_it_leaks(
    db: Database, backend: RunningBackend, hunt: LeakHunt
) -> None:
    """The canary above would fail on a leak: each kind of leak, made on purpose, is found."""
    structlog.get_logger("careless").info("login_attempt", password=CANARY_PASSWORD)
    logging.getLogger("careless.stdlib").warning("token code was %s", "87654321")
    print("sms: code is 583920 for", CANARY_MOBILE)
    headers = {"Authorization": f"Bearer {backend.settings.api_token}"}
    opening = {"uniqueid": "1700000000.9", "hotline": "39023333"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{backend.url}/v1/calls", json=opening) as resp:
            call_id = (await resp.json())["call_id"]
        async with db.sessions.begin() as session:  # past the masking, as a careless write
            session.add(
                CallEvent(
                    call_id=call_id,
                    at=db.now(),
                    kind="input",
                    name="note",
                    detail={"typed": "sms 246813"},
                )
            )
        async with http.get(f"{backend.url}/v1/calls/{call_id}") as resp:
            await resp.json()

    hits = await hunt.leaks(
        {"password": CANARY_PASSWORD, "token code": "87654321", "sms": "583920", "db": "246813"}
    )
    wheres = {hit.split(": ")[0] for hit in hits}
    assert {
        "password in structlog events",
        "password in printed output (rendered logs)",
        "token code in stdlib logging",
        "sms in printed output (rendered logs)",
        "db in call events",
        "db in http replies",
        "db in database dump and file",
    } <= wheres
    # A 6-digit code is not mistaken for a timestamp's microseconds, and is found standing alone.
    assert not re.search(pattern("583920"), b"2026-11-23T03:00:00.583920+00:00")
    assert re.search(pattern("583920"), b'{"code": "583920"}')
