"""A login's outcome is one unit of work (backend/login.py), and stays right when something
changed the account while the password was being checked: the lease ran out and another login
took it, or the token step was used meanwhile. Such a success is undone whole and settled as
the failure it became. A refusal before any check costs one unit of work more, or none. On
SQLite and PostgreSQL, the real database under `login()`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select, update

import otp
from backend import admin
from backend import login as login_module
from backend.database import Database
from backend.errors import BackendError
from backend.login import login
from backend.models import Account, CallerThrottle, LoginSession, Token
from tests.support.databases import DATABASES
from tests.support.statements import sql_seen
from tests.support.truckers import TestClock as Clock

NUMBER = "40000001"
PASSWORD = "246810"
CALLER = "91234567"


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def new_account(db: Database, failed_logins: int = 0) -> str:
    """An account with a hardware token and `failed_logins` already; returns the token's seed."""
    await admin.create_account(db, NUMBER, PASSWORD)
    seed = await admin.add_token(db, NUMBER, serial="FTK40000001")
    await change(db, update(Account).values(failed_logins=failed_logins))
    return seed


async def change(db: Database, statement: object) -> None:
    async with db.sessions.begin() as session:
        await session.execute(statement)  # type: ignore[call-overload]


def meanwhile(db: Database, monkeypatch: pytest.MonkeyPatch, statement: object) -> None:
    """`statement` runs, committed, while the login checks the password."""
    verify: Callable[[str | None, str], Awaitable[bool]] = db.passwords.verify

    async def verify_then_change(password_hash: str | None, password: str) -> bool:
        ok = await verify(password_hash, password)
        await change(db, statement)
        return ok

    monkeypatch.setattr(db.passwords, "verify", verify_then_change)


async def attempt(db: Database, code: str, password: str = PASSWORD) -> str:
    """'ok', or the error code the caller would hear."""
    try:
        await login(db, NUMBER, password, code, caller_id=CALLER)
    except BackendError as e:
        return e.code
    return "ok"


async def state(db: Database) -> tuple[Account, Token, int, int]:
    """The account, its token, its login sessions, and the caller's slots taken."""
    async with db.sessions() as session:
        account = await session.scalar(select(Account).where(Account.number == NUMBER))
        token = await session.scalar(select(Token).where(Token.serial == "FTK40000001"))
        opened = await session.scalar(select(func.count()).select_from(LoginSession))
        slots = await session.scalar(
            select(CallerThrottle.failures).where(CallerThrottle.caller.like(f"%{CALLER}"))
        )
    assert account is not None and token is not None
    return account, token, opened or 0, slots or 0


def code(seed: str, clock: Clock) -> str:
    return otp.current_code(seed, otp.HARDWARE, clock.now())


async def test_a_success_whose_lease_ran_out_meanwhile_changes_nothing(
    db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = await new_account(db, failed_logins=2)
    until = clock.now() + timedelta(seconds=60)
    meanwhile(
        db, monkeypatch, update(Account).values(login_lease="x" * 32, login_lease_until=until)
    )
    assert await attempt(db, code(seed, clock)) == "login_failed"  # busy
    account, token, opened, slots = await state(db)
    assert (account.failed_logins, account.login_lease) == (2, "x" * 32)  # the other login's
    assert (token.last_used_step, opened, slots) == (None, 0, 1)
    monkeypatch.undo()
    await change(db, update(Account).values(login_lease=None, login_lease_until=None))
    assert await attempt(db, code(seed, clock)) == "ok"  # the step was not used up


async def test_a_success_whose_step_was_used_meanwhile_is_a_counted_replay(
    db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = await new_account(db, failed_logins=2)
    used = 2**31 - 1  # later than any step of now (an INTEGER column)
    meanwhile(db, monkeypatch, update(Token).values(last_used_step=used))
    assert await attempt(db, code(seed, clock)) == "login_failed"
    account, token, opened, slots = await state(db)
    assert (account.failed_logins, account.login_lease, account.locked_until) == (3, None, None)
    assert (token.last_used_step, opened, slots) == (used, 0, 1)


async def test_a_token_revoked_meanwhile_is_not_used(
    db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login read its token as usable, and it is revoked before the success (PostgreSQL
    reads the tokens as of the reserving statement's start, so a token another login's success
    revoked meanwhile can look usable): the step's claim refuses it, nothing is written."""
    seed = await new_account(db)
    meanwhile(db, monkeypatch, update(Token).values(status="revoked"))
    assert await attempt(db, code(seed, clock)) == "login_failed"
    account, token, opened, slots = await state(db)
    assert (account.login_lease, token.last_used_step, opened, slots) == (None, None, 0, 1)


async def test_a_login_sees_a_lockout_committed_while_it_waited_for_the_account(
    db: Database, clock: Clock
) -> None:
    """Another unit of work holds the account's row (it locks the account) while a login starts:
    the login waits for it, and reads the account as that unit committed it: locked."""
    seed = await new_account(db)
    until = clock.now() + timedelta(minutes=15)
    holding, commit = asyncio.Event(), asyncio.Event()

    async def lock_the_account() -> None:
        async with db.sessions.begin() as other:
            await other.execute(update(Account).values(locked_until=until))
            holding.set()
            await commit.wait()

    other = asyncio.create_task(lock_the_account())
    await holding.wait()
    login_task = asyncio.create_task(attempt(db, code(seed, clock)))
    await asyncio.sleep(0.3)
    assert not login_task.done()  # waiting for the row (SQLite: for the writer's turn)
    commit.set()
    await other
    assert await login_task == "locked"
    account, token, opened, _ = await state(db)
    assert (account.login_lease, token.last_used_step, opened) == (None, None, 0)


async def test_a_success_gives_the_slot_back_and_forgets_the_failures(
    db: Database, clock: Clock
) -> None:
    seed = await new_account(db, failed_logins=2)
    assert await attempt(db, code(seed, clock)) == "ok"
    account, token, opened, slots = await state(db)
    assert (account.failed_logins, account.login_lease, account.login_lease_until) == (
        0,
        None,
        None,
    )
    assert (token.last_used_step is not None, opened, slots) == (True, 1, 0)


async def test_a_failure_counts_and_locks_even_if_its_lease_ran_out_meanwhile(
    db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = await new_account(db, failed_logins=db.settings.lockout_failures - 2)
    until = clock.now() + timedelta(seconds=60)
    meanwhile(
        db, monkeypatch, update(Account).values(login_lease="x" * 32, login_lease_until=until)
    )
    assert await attempt(db, code(seed, clock), password="135790") == "login_failed"
    account, *_ = await state(db)
    assert (account.failed_logins, account.login_lease) == (
        db.settings.lockout_failures - 1,
        "x" * 32,
    )
    assert await attempt(db, code(seed, clock), password="135790") == "login_failed"  # busy
    monkeypatch.undo()
    await change(db, update(Account).values(login_lease=None, login_lease_until=None))
    assert await attempt(db, code(seed, clock), password="135790") == "login_failed"
    account, *_ = await state(db)
    locked_until = clock.now() + db.settings.lockout_period
    assert (account.failed_logins, account.locked_until, account.login_lease) == (
        0,
        locked_until,
        None,
    )
    assert await attempt(db, code(seed, clock)) == "locked"


async def test_a_success_stores_a_new_hash_of_a_password_hashed_with_another_profile(
    db: Database, clock: Clock
) -> None:
    seed = await new_account(db, failed_logins=1)
    other = PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1).hash(PASSWORD)
    await change(db, update(Account).values(password_hash=other))
    assert await attempt(db, code(seed, clock)) == "ok"
    account, *_ = await state(db)
    assert account.password_hash != other and not db.passwords.needs_rehash(account.password_hash)
    assert await db.passwords.verify(account.password_hash, PASSWORD)
    assert (account.failed_logins, account.login_lease) == (0, None)


@pytest.mark.parametrize("database", ["sqlite"])  # PostgreSQL reads it in the same statement
async def test_a_failed_read_of_the_account_gives_its_lease_back_and_keeps_the_slot(
    db: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the slot and the lease are committed before the account is read: if that read
    fails (the database gone a moment), the lease goes back at once (not after its minute) and
    the slot counts as a failure, as any error before the outcome."""
    seed = await new_account(db)

    async def unreadable(_session: object, _number: str) -> None:
        raise ConnectionResetError("the database went away")

    monkeypatch.setattr(login_module, "_read_account", unreadable)
    with pytest.raises(ConnectionResetError):
        await attempt(db, code(seed, clock))
    account, token, opened, slots = await state(db)
    assert (account.login_lease, account.login_lease_until, account.failed_logins) == (
        None,
        None,
        0,
    )
    assert (token.last_used_step, opened, slots) == (None, 0, 1)
    monkeypatch.undo()
    assert await attempt(db, code(seed, clock)) == "ok"  # the account is not kept waiting


async def test_a_refusal_before_any_check_takes_the_slot_then_settles_it(
    db: Database, clock: Clock
) -> None:
    """Busy: the account's lease is held. Refused: the caller number's window is full. Each is
    the slot (and lease) taken, then one unit of work that settles it; busy reads the account
    between. (These logins name no call: no event is recorded.)"""
    seed = await new_account(db)
    until = clock.now() + timedelta(seconds=60)
    await change(db, update(Account).values(login_lease="x" * 32, login_lease_until=until))
    reserve = ["INSERT caller_throttles", "UPDATE accounts", "SELECT accounts"]
    if db.engine.dialect.name == "postgresql":  # one statement, the account's read in it
        reserve = ["WITH INSERT caller_throttles, UPDATE accounts"]
    for _ in range(db.settings.caller_throttle_failures):
        with sql_seen(db) as busy:
            assert await attempt(db, code(seed, clock)) == "login_failed"
        # The reserving (SQLite: and the account read on its own), the settling.
        assert busy.connections == (2 if len(reserve) == 1 else 3)
        kept = "UPDATE caller_throttles"  # the slot kept
        assert busy.statements == [*reserve, kept]
    with sql_seen(db) as refused:
        assert await attempt(db, code(seed, clock)) == "caller_throttled"
    assert refused.connections == 2
    # SQLite asks for no lease without a slot; PostgreSQL's statement takes none without one.
    assert refused.statements == [*reserve[:1], "SELECT caller_throttles"]
    account, *_ = await state(db)
    assert account.login_lease == "x" * 32  # still the other login's
