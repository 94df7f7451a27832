"""Security tokens one by one: added with a seed, assigned to an account, revoked,
resynchronised from two codes. No message ever quotes a seed."""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import date
from typing import cast

import structlog
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

import otp
from backend import audit
from backend.admin.common import AdminError, account_by_number, token_by_serial
from backend.audit import Actor
from backend.database import Database
from backend.models import Token, TokenKind
from otp import TokenProfile, new_seed

log = structlog.get_logger(__name__)


async def add_token(
    db: Database,
    account_number: str | None,
    serial: str | None = None,
    kind: TokenKind = "hardware",
    digits: int = 6,
    period: int = 60,
    expires_on: date | None = None,
    seed_base32: str | None = None,
    by: Actor | None = None,
) -> str:
    """Assign a token (or add an unassigned one, with no account); return its seed, base32."""
    try:
        TokenProfile(kind, digits=digits, period=period)
    except ValueError as e:
        raise AdminError(str(e)) from None
    seed = _checked_seed(seed_base32) if seed_base32 else new_seed()
    serial = serial or ("FTK2" if kind == "hardware" else "FTKM") + secrets.token_hex(5).upper()
    try:
        async with db.sessions.begin() as session:
            account_id = None
            if account_number is not None:
                account_id = (await account_by_number(session, account_number)).id
            session.add(
                Token(
                    serial=serial,
                    kind=kind,
                    digits=digits,
                    period=period,
                    seed_encrypted=db.seeds.encrypt(seed),
                    expires_on=expires_on,
                    account_id=account_id,
                    created_at=db.now(),
                )
            )
            target = f"account:{account_number}" if account_number else f"token:{serial}"
            audit.changed(session, db, by, "token_added", target, {"kind": kind, "serial": serial})
    except IntegrityError:
        raise AdminError(f"token {serial} already exists") from None
    return seed


async def assign_token(
    db: Database, serial: str, account_number: str, by: Actor | None = None
) -> None:
    """Link an unassigned token (as imported) to an account."""
    async with db.sessions.begin() as session:
        account = await account_by_number(session, account_number)
        token = await token_by_serial(session, serial)
        if token.status == "revoked":
            raise AdminError(f"token {serial} is revoked")
        if token.account_id == account.id:
            raise AdminError(f"token {serial} is already assigned to {account_number}")
        if token.account_id is not None:
            raise AdminError(f"token {serial} is assigned to another account; revoke it first")
        claimed = await session.execute(
            update(Token)
            .where(Token.id == token.id, Token.account_id.is_(None))
            .values(account_id=account.id)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise AdminError(f"token {serial} was assigned meanwhile")
        detail = {"account": account_number}
        audit.changed(session, db, by, "token_assigned", f"token:{serial}", detail)
    log.info("token_assigned", serial=serial, account=account_number)


async def revoke_token(db: Database, serial: str, by: Actor | None = None) -> None:
    """A lost or broken token: refused at once, for good."""
    async with db.sessions.begin() as session:
        token = await token_by_serial(session, serial)
        if token.status == "revoked":
            raise AdminError(f"token {serial} is already revoked")
        await session.execute(
            update(Token)
            .where(Token.id == token.id)
            .values(status="revoked", revoked_at=db.now())
            .execution_options(synchronize_session=False)
        )
        audit.changed(session, db, by, "token_revoked", f"token:{serial}")
    log.info("token_revoked", serial=serial)


async def resync_token(
    db: Database,
    serial: str,
    first_code: str,
    second_code: str,
    window: int | None = None,
    by: Actor | None = None,
) -> int:
    """Resynchronise a token from two consecutive codes read off it now; return its drift (steps
    the token is ahead of the server, negative when behind; an event (HOTP) token: presses of
    its button that never reached a login). Both codes are used up. `window`: steps searched
    each side of now (otp.RESYNC_WINDOW), or counters ahead (otp.HOTP_RESYNC_WINDOW)."""
    now = db.now()
    async with db.sessions.begin() as session:
        token = await token_by_serial(session, serial)
        if token.status == "revoked":
            raise AdminError(f"token {serial} is revoked")
        seed = db.seeds.decrypt(token.seed_encrypted)
        expected = token.counter or 0  # hotp
        if token.type == "hotp":
            step = otp.resync_hotp(seed, first_code, second_code, token.profile, expected, window)
            where = f"the next {window or otp.HOTP_RESYNC_WINDOW} presses"
        else:
            step = otp.resync(seed, first_code, second_code, token.profile, now, window)
            where = f"±{window or otp.RESYNC_WINDOW} steps of now"
        if step is None:
            raise AdminError(
                f"no two consecutive codes of token {serial} match within {where}:"
                " read two codes in a row off the token and try again"
            )
        values: dict[str, int]
        if token.type == "hotp":
            # The counter is the token's own: no clock to drift from, only skipped presses.
            drift = step - 1 - expected
            values = {"counter": step + 1}
        else:
            drift = step - int(now.timestamp()) // cast(int, token.period)
            values = {"drift": drift, "last_used_step": step}
        await session.execute(
            update(Token)
            .where(Token.id == token.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        audit.changed(session, db, by, "token_resynchronised", f"token:{serial}", {"drift": drift})
    log.info("token_resynchronised", serial=serial, drift=drift)
    return drift


def _checked_seed(seed_base32: str) -> str:
    seed = seed_base32.replace(" ", "").upper()
    try:
        base64.b32decode(seed + "=" * (-len(seed) % 8))
    except binascii.Error:
        raise AdminError("the seed is not base32") from None
    return seed
