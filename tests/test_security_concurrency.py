"""The login limits under concurrency (docs/security.md, rows 1, 2, 8, 9): requests fired at
once (asyncio.gather) at the real HTTP API, on SQLite and on PostgreSQL, outcomes counted.

"Evaluated" is what the limits bound: a token code compared (otp.verify, spied on in this
process, where the backend runs) or a password checked (Argon2, spied on likewise)."""

# ruff: noqa: F811  (the fixtures imported from tests.support.console are used as arguments)
from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

import otp
from backend import admin
from backend.app import RunningBackend
from backend.database import Database
from backend.models import Account, AuditEntry
from backend.security import Passwords
from tests.support.console import PASSWORD as CONSOLE_PASSWORD
from tests.support.console import (  # noqa: F401  (fixtures)
    ConsoleClient,
    backend_settings,
    supervisors,
)
from tests.support.databases import DATABASES
from tests.support.truckers import TestClock

PASSWORD = "246810"
LOCKOUT = 5  # the default IVRS_LOCKOUT_FAILURES
THROTTLE = 10  # the default IVRS_CALLER_THROTTLE_FAILURES


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token code the backend compares (the codes, in order)."""
    seen: list[str] = []
    original = otp.verify

    def spy(seed: bytes, code: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(code)
        return original(seed, code, *args, **kwargs)

    monkeypatch.setattr(otp, "verify", spy)
    return seen


@pytest.fixture
def verified(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password the backend checks with Argon2."""
    seen: list[str] = []
    original = Passwords.verify

    async def spy(self: Passwords, password_hash: str | None, password: str) -> bool:
        seen.append(password)
        return await original(self, password_hash, password)

    monkeypatch.setattr(Passwords, "verify", spy)
    return seen


async def new_account(db: Database, number: str) -> str:
    await admin.create_account(db, number, PASSWORD)
    return await admin.add_token(db, number, serial=f"FTK{number}")


def code_now(seed: str, clock: TestClock, steps: int = 0) -> str:
    return otp.current_code(seed, otp.HARDWARE, clock.now() + timedelta(minutes=steps))


def wrong_codes(seed: str, clock: TestClock, count: int) -> list[str]:
    """`count` codes the token does not show now (nor one step either side)."""
    near = {code_now(seed, clock, s) for s in (-1, 0, 1)}
    return [c for c in (f"{n:06d}" for n in range(100_000, 999_999, 7919)) if c not in near][:count]


async def logins(backend: RunningBackend, attempts: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    """POST /v1/sessions for every attempt at once."""
    headers = {"Authorization": f"Bearer {backend.settings.api_token}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def post(body: dict[str, Any]) -> tuple[int, Any]:
            url = f"{backend.url}/v1/sessions"
            async with http.post(url, json=body, headers=headers) as response:
                return response.status, await response.json()

        return await asyncio.gather(*(post(body) for body in attempts))


def attempt(number: str, code: str, password: str = PASSWORD, **more: Any) -> dict[str, Any]:
    return {"account": number, "password": password, "token_code": code, **more}


async def account_row(db: Database, number: str) -> Account:
    async with db.sessions() as session:
        account = await session.scalar(select(Account).where(Account.number == number))
        assert account is not None
        return account


def codes(results: list[tuple[int, Any]]) -> Counter[str]:
    return Counter("ok" if s == 200 else r["error"]["code"] for s, r in results)


# --- row 1: phone login -----------------------------------------------------------------------


@pytest.mark.parametrize("together", [30, 200])
async def test_wrong_codes_sent_at_once_are_compared_at_most_lockout_times(
    backend: RunningBackend,
    db: Database,
    clock: TestClock,
    compared: list[str],
    together: int,
) -> None:
    seed = await new_account(db, "40000001")
    wrong = wrong_codes(seed, clock, 40)
    for _ in range(3 * LOCKOUT):  # waves, until the account is locked
        results = await logins(
            backend, [attempt("40000001", wrong[i % len(wrong)]) for i in range(together)]
        )
        assert set(codes(results)) <= {"login_failed", "locked"}
        assert len(compared) <= LOCKOUT
        if (await account_row(db, "40000001")).locked_until is not None:
            break
    assert len(compared) == LOCKOUT and (await account_row(db, "40000001")).locked_until
    # Locked: the right code too is refused, and (with the right password) told so.
    assert codes(await logins(backend, [attempt("40000001", code_now(seed, clock))])) == {
        "locked": 1
    }
    assert len(compared) == LOCKOUT


async def test_a_wrong_password_hears_the_same_whether_locked_or_not(
    backend: RunningBackend, db: Database, clock: TestClock
) -> None:
    seed = await new_account(db, "40000001")
    await new_account(db, "40000002")
    wrong = wrong_codes(seed, clock, LOCKOUT)
    for code in wrong:  # one at a time: the account locks
        await logins(backend, [attempt("40000001", code)])
    assert (await account_row(db, "40000001")).locked_until is not None
    locked = await logins(backend, [attempt("40000001", code_now(seed, clock), "135790")])
    unlocked = await logins(backend, [attempt("40000002", code_now(seed, clock), "135790")])
    assert locked == unlocked == [(401, unlocked[0][1])]
    assert unlocked[0][1]["error"]["code"] == "login_failed"


async def test_one_caller_number_is_evaluated_at_most_the_throttle_however_many_at_once(
    backend: RunningBackend, db: Database, verified: list[str]
) -> None:
    caller = "+852 6123 4567"
    results = await logins(
        backend, [attempt(f"4{n:07d}", "123456", caller_id=caller) for n in range(100)]
    )
    # Refused as failures while checked, then as a throttled caller number (never 200).
    assert {s for s, _ in results} == {401, 429}
    assert len(verified) <= THROTTLE  # unknown accounts: one decoy Argon2 check each
    assert len(verified) == THROTTLE  # ... and the throttle is what stopped the rest


async def test_a_success_never_clears_a_lock_a_concurrent_failure_set(
    backend: RunningBackend, db: Database, clock: TestClock, compared: list[str]
) -> None:
    """The last allowed failure and the right code at once, on fresh accounts: whatever the
    order, the outcome is one a sequence of the two could give."""
    for n in range(8):
        number = f"4100000{n}"
        seed = await new_account(db, number)
        wrong = wrong_codes(seed, clock, LOCKOUT)
        for code in wrong[: LOCKOUT - 1]:
            await logins(backend, [attempt(number, code)])
        compared.clear()
        right, last_wrong = await logins(
            backend, [attempt(number, code_now(seed, clock)), attempt(number, wrong[-1])]
        )
        account = await account_row(db, number)
        if right[0] == 200:  # the right code first: the wrong one after it counts afresh
            assert account.locked_until is None
            assert account.failed_logins == (1 if wrong[-1] in compared else 0)
        elif wrong[-1] in compared:  # the failure first: locked, and the right code refused
            assert account.locked_until is not None
        assert len(compared) <= 2
    # 29 wrong and the right one at once: at most LOCKOUT comparisons, and a lock that stays.
    seed = await new_account(db, "42000000")
    compared.clear()
    wrong = wrong_codes(seed, clock, 29)
    results = await logins(
        backend,
        [attempt("42000000", c) for c in wrong] + [attempt("42000000", code_now(seed, clock))],
    )
    account = await account_row(db, "42000000")
    assert len(compared) <= LOCKOUT
    if sum(c in wrong for c in compared) == LOCKOUT:
        assert account.locked_until is not None
    assert codes(results)["ok"] <= 1


async def test_the_count_starts_afresh_after_a_lockout_ends(
    backend: RunningBackend, db: Database, clock: TestClock
) -> None:
    """Row 8: after failures sent at once lock the account and the lock ends, one slip does not
    re-lock it: the right code then logs in."""
    seed = await new_account(db, "40000001")
    wrong = wrong_codes(seed, clock, 14)  # not a multiple of LOCKOUT
    for _ in range(3 * LOCKOUT):  # waves of failures at once, until the account is locked
        await logins(backend, [attempt("40000001", c) for c in wrong])
        if (await account_row(db, "40000001")).locked_until is not None:
            break
    account = await account_row(db, "40000001")
    assert account.locked_until is not None and account.failed_logins == 0
    clock.advance(16 * 60)
    slip = wrong_codes(seed, clock, 1)
    assert codes(await logins(backend, [attempt("40000001", slip[0])])) == {"login_failed": 1}
    assert codes(await logins(backend, [attempt("40000001", code_now(seed, clock))])) == {"ok": 1}


async def test_failures_without_caller_id_do_not_shut_out_other_withheld_callers(
    backend: RunningBackend, db: Database, clock: TestClock
) -> None:
    """Row 9: 30 failed logins with no caller id (an attacker's) leave an honest caller who
    withholds the number able to log in; the per-account lockout still holds."""
    seed = await new_account(db, "40000001")
    await logins(backend, [attempt(f"4{n:07d}", "123456") for n in range(100, 130)])
    assert codes(await logins(backend, [attempt("40000001", code_now(seed, clock))])) == {"ok": 1}


# --- row 2: console sign-in -------------------------------------------------------------------


async def test_console_sign_ins_at_once_are_refused_after_five(
    backend: RunningBackend,
    db: Database,
    supervisors: dict[str, str],  # noqa: F811
    verified: list[str],
) -> None:
    client = ConsoleClient(backend.url)
    try:
        await client.get("/console/sign-in")  # the sign-in form's CSRF cookie and token

        async def sign_in(password: str) -> int:
            form = {"name": "sam", "password": password, "csrf_token": client.csrf}
            url = f"{backend.url}/console/sign-in"
            async with client.http.post(url, data=form, allow_redirects=False) as response:
                return response.status

        passwords = [f"wrong-password-{n}" for n in range(99)] + [CONSOLE_PASSWORD]
        statuses = Counter(await asyncio.gather(*(sign_in(p) for p in passwords)))
    finally:
        await client.close()
    assert len(verified) <= 5
    assert statuses[302] == 0  # the right password, sent last, is refused like the rest
    assert statuses == {401: len(verified), 429: 100 - len(verified)}
    async with db.sessions() as session:
        actions = Counter(e.action for e in await session.scalars(select(AuditEntry)))
    assert actions["signed_in"] == 0 and actions["sign_in_failed"] == len(verified)
