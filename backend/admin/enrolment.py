"""FortiToken Mobile enrolment: a new secret for the account's phone, pending until its first
login."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import structlog
from sqlalchemy import update

from backend import audit
from backend.admin.common import AdminError, account_by_number
from backend.audit import Actor
from backend.database import Database, unused_number
from backend.models import Token
from otp import TokenProfile, new_seed
from otp.enrolment import provisioning_uri

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class MobileEnrolment:
    """A new FortiToken Mobile token, pending until its first correct code at a login."""

    account: str
    serial: str
    digits: int
    period: int
    seed: str = field(repr=False)  # base32; shown once, as the URI and its QR code
    uri: str = field(repr=False)


async def enrol_mobile_token(
    db: Database,
    account_number: str,
    digits: int = 6,
    period: int = 30,
    by: Actor | None = None,
) -> MobileEnrolment:
    """A new TOTP secret for the account's phone, stored as a pending token.

    The account's current token keeps working until the first login with a code of the new
    one; that login activates it and revokes the others. An earlier enrolment that was never
    activated is revoked now (its QR code may have been seen by someone else).
    """
    try:
        profile = TokenProfile("mobile", digits=digits, period=period)
    except ValueError as e:
        raise AdminError(str(e)) from None
    seed = new_seed()
    now = db.now()
    async with db.sessions.begin() as session:
        account = await account_by_number(session, account_number)
        serial = await unused_number(
            session, Token.serial, lambda: "FTKM" + secrets.token_hex(5).upper()
        )
        await session.execute(
            update(Token)
            .where(Token.account_id == account.id, Token.status == "pending")
            .values(status="revoked", revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        session.add(
            Token(
                serial=serial,
                kind="mobile",
                digits=digits,
                period=period,
                seed_encrypted=db.seeds.encrypt(seed),
                account_id=account.id,
                status="pending",
                created_at=now,
            )
        )
        detail = {"serial": serial, "digits": digits, "period": period}
        audit.changed(session, db, by, "mobile_token_enrolled", f"account:{account_number}", detail)
    log.info("mobile_token_enrolled", account=account_number, serial=serial)
    uri = provisioning_uri(seed, profile, account_number)
    return MobileEnrolment(account_number, serial, digits, period, seed, uri)
