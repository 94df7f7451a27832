"""Accounts: created one by one, locked and unlocked, a new password; a caller number's
login throttle lifted."""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from sqlalchemy import case, delete, update
from sqlalchemy.exc import IntegrityError

import formats
from backend import audit
from backend.admin.common import AdminError, account_by_number
from backend.audit import Actor
from backend.callers import caller_key
from backend.database import Database
from backend.models import Account, AccountType, CallerThrottle

log = structlog.get_logger(__name__)


async def create_account(
    db: Database,
    number: str,
    password: str,
    type: AccountType = "trucker",
    services: Iterable[str] = ("road_bundling",),
    needs_activation: bool = False,
    mobile: str | None = None,
    by: Actor | None = None,
) -> None:
    if not formats.is_account_number(number):
        raise AdminError(f"an account number has {formats.ACCOUNT_DIGITS} digits")
    if not formats.is_password(password):
        low, high = formats.PASSWORD_DIGITS
        raise AdminError(f"a password has {low} to {high} digits (it is keyed on a phone)")
    if type not in ("trucker", "agent", "shipper"):
        raise AdminError(f"unknown account type: {type}")
    account = Account(
        number=number,
        type=type,
        password_hash=await db.passwords.hash(password),
        services=list(services),
        needs_activation=needs_activation,
        mobile=mobile,
    )
    try:
        async with db.sessions.begin() as session:
            session.add(account)
            audit.changed(session, db, by, "account_created", f"account:{number}", {"type": type})
    except IntegrityError:
        raise AdminError(f"account {number} already exists") from None


async def unlock(db: Database, number: str, by: Actor | None = None) -> None:
    """Lift a lockout (failures or an administrator's lock); a disabled account stays so."""
    async with db.sessions.begin() as session:
        account = await account_by_number(session, number)
        await session.execute(
            update(Account)
            .where(Account.id == account.id)
            .values(
                failed_logins=0,
                locked_until=None,
                status=case((Account.status == "locked", "active"), else_=Account.status),
            )
            .execution_options(synchronize_session=False)
        )
        audit.changed(session, db, by, "account_unlocked", f"account:{number}")
    log.info("account_unlocked", account=number)


async def lock(db: Database, number: str, by: Actor | None = None) -> None:
    """An administrator's lock: every login refused until `unlock` (a disabled account stays
    disabled)."""
    async with db.sessions.begin() as session:
        account = await account_by_number(session, number)
        if account.status != "active":
            raise AdminError(f"account {number} is already {account.status}")
        await session.execute(
            update(Account)
            .where(Account.id == account.id)
            .values(status="locked")
            .execution_options(synchronize_session=False)
        )
        audit.changed(session, db, by, "account_locked", f"account:{number}")
    log.info("account_locked_by_admin", account=number)


async def reset_password(db: Database, number: str, password: str, by: Actor | None = None) -> None:
    """An administrator sets a new password (6 to 12 digits); the failure count starts afresh."""
    if not formats.is_password(password):
        low, high = formats.PASSWORD_DIGITS
        raise AdminError(f"a password has {low} to {high} digits (it is keyed on a phone)")
    password_hash = await db.passwords.hash(password)
    async with db.sessions.begin() as session:
        account = await account_by_number(session, number)
        await session.execute(
            update(Account)
            .where(Account.id == account.id)
            .values(password_hash=password_hash, failed_logins=0)
            .execution_options(synchronize_session=False)
        )
        audit.changed(session, db, by, "password_reset", f"account:{number}")
    log.info("password_reset", account=number)


async def release_caller(db: Database, caller_id: str, by: Actor | None = None) -> bool:
    """Forget a caller number's failed logins (and lift its throttle); False if none were kept."""
    async with db.sessions.begin() as session:
        result = await session.execute(
            delete(CallerThrottle).where(CallerThrottle.caller == caller_key(caller_id))
        )
        released = bool(result.rowcount)  # type: ignore[attr-defined]
        if released:
            audit.changed(session, db, by, "caller_released", f"caller:{caller_id}")
    return released
