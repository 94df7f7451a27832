"""First call after the migration (docs/call-flow.md, 3): a Hong Kong mobile number verified by an
SMS code, and the terms and conditions accepted. When both are done the account no longer
needs activation.

Nothing is half-registered: the account's mobile changes only with a right code, in the
transaction that uses the code up. Races are settled by conditional UPDATEs and constraints:
a code is used up once (`used_at IS NULL`), a wrong try is counted only while tries are left,
the n-th code of a call is unique (a 4th cannot be sent), and an account accepts a terms
version once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

import formats
from backend import sms
from backend.call_logs import known_call, record_event
from backend.database import Database
from backend.errors import BackendError
from backend.models import Account, SmsCode, TermsAcceptance

log = structlog.get_logger(__name__)

MAX_CODES_PER_CALL = 3
MAX_CODE_TRIES = 3  # wrong tries per code; then the caller asks for a new one
CODE_VALID_FOR = timedelta(minutes=10)
# Codes requested with no known call share a rolling window instead of a call.
NO_CALL_WINDOW = timedelta(hours=1)
WRONG_CODE = ("sms_code_wrong", "The code is not correct, or it has expired.")
NO_PENDING = ("no_pending_mobile", "No mobile number is waiting for a code.")
CODE_LIMIT = ("sms_code_limit", f"At most {MAX_CODES_PER_CALL} codes per call.")
NOT_SENT = ("sms_not_sent", "The SMS provider refused the code or could not be reached.")


@dataclass(frozen=True)
class Activation:
    """What the first call still has to do for an account."""

    needs_activation: bool
    mobile_registered: bool
    terms_accepted: bool


def activation(account: Account, terms_version: str) -> Activation:
    mobile_registered = account.mobile is not None
    terms_accepted = account.terms_version_accepted == terms_version
    return Activation(
        needs_activation=account.needs_activation and not (mobile_registered and terms_accepted),
        mobile_registered=mobile_registered,
        terms_accepted=terms_accepted,
    )


# --- mobile number ---------------------------------------------------------------------------


async def send_code(db: Database, number: str, mobile: str, call_id: int | None) -> int:
    """Send a new code to `mobile` (8 digits, a Hong Kong mobile number); it replaces any
    earlier code of the account. Returns how many more codes this call may send."""
    if not formats.is_hong_kong_mobile(mobile):
        raise BackendError("mobile_invalid", "That is not a Hong Kong mobile number.")
    now = db.now()
    code = db.sms_codes.new()
    # A concurrent request of the same call may take our place in the count: count again.
    for _ in range(MAX_CODES_PER_CALL + 1):
        try:
            async with db.sessions.begin() as session:
                account = await _account(session, number)
                call = await known_call(session, call_id)
                seq = await _codes_sent(session, account.id, call, now) + 1
                if seq > MAX_CODES_PER_CALL:
                    raise BackendError(*CODE_LIMIT)
                session.add(
                    SmsCode(
                        account_id=account.id,
                        call_id=call,
                        seq=seq,
                        mobile=mobile,
                        code_hash=db.sms_codes.hash(number, mobile, code),
                        created_at=now,
                        expires_at=now + CODE_VALID_FOR,
                    )
                )
                await session.flush()  # the unique (account, call, seq) speaks here
                message = await sms.queue(
                    session, now, mobile, "sms_code", sms.code_text(code), secret=code
                )
                detail = {"account": number, "mobile_last4": sms.last4(mobile), "seq": seq}
                await record_event(session, call, now, "sms_code_sent", detail)
            break
        except IntegrityError:
            continue
    else:
        raise BackendError(*CODE_LIMIT)
    if message is not None and (delivery := await sms.deliver_one(db, message)).failed:
        # Certainly not sent (refused, or the provider down): the caller hears it at once.
        async with db.sessions.begin() as session:
            detail = {"account": number, "mobile_last4": sms.last4(mobile), "seq": seq}
            await record_event(session, call, now, "sms_code_not_sent", detail | delivery.brief)
        log.warning("sms_code_not_sent", account=number, call_id=call_id, seq=seq)
        raise BackendError(*NOT_SENT)
    log.info("sms_code_sent", account=number, call_id=call_id, seq=seq)
    return MAX_CODES_PER_CALL - seq


async def verify_code(db: Database, number: str, code: str, call_id: int | None) -> str:
    """Register the mobile the account's newest code was sent to, if `code` is that code, in
    time and within its tries. Returns the mobile. A repeat of the right code (a retried or
    concurrent request) answers the same and changes nothing."""
    now = db.now()
    async with db.sessions.begin() as session:
        account = await _account(session, number)
        pending = await session.scalar(
            select(SmsCode)
            .where(SmsCode.account_id == account.id)
            .order_by(SmsCode.id.desc())
            .limit(1)
        )
        if pending is None:
            raise BackendError(*NO_PENDING)
        right = db.sms_codes.matches(pending.code_hash, number, pending.mobile, code)
        outcome = await _try_code(session, pending, right, now)
        if outcome == "registered":
            await session.execute(
                update(Account)
                .where(Account.id == account.id)
                .values(mobile=pending.mobile)
                .execution_options(synchronize_session=False)
            )
            await _activate_when_done(session, account.id, db.settings.terms_version)
            detail = {"account": number, "mobile_last4": sms.last4(pending.mobile)}
            await record_event(session, call_id, now, "mobile_registered", detail)
        elif outcome != "repeated":  # the counted try is kept: the refusal comes after commit
            detail = {"account": number, "reason": outcome}
            await record_event(session, call_id, now, "sms_code_refused", detail)

    if outcome == "registered":
        log.info("mobile_registered", account=number, call_id=call_id)
    elif outcome != "repeated":
        log.info("sms_code_refused", account=number, reason=outcome, call_id=call_id)
        raise BackendError(*(NO_PENDING if outcome == "no_pending" else WRONG_CODE))
    return pending.mobile


async def _try_code(session: AsyncSession, pending: SmsCode, right: bool, now: datetime) -> str:
    """What a try at the newest code comes to: "registered" (this request used the right code
    up), "repeated" (the right code, used up by an earlier or concurrent request), or why it is
    refused: "wrong", "expired", "tries_used", "no_pending" (a used code, and not it)."""
    if pending.used_at is not None:
        return "repeated" if right and pending.expires_at > now else "no_pending"
    if pending.expires_at <= now:
        return "expired"
    if not await _count_try(session, pending.id):
        # No try left, or a concurrent request used the code up since we read it.
        used = await session.scalar(select(SmsCode.used_at).where(SmsCode.id == pending.id))
        return "repeated" if right and used is not None else "tries_used"
    if not right:
        return "wrong"
    return "registered" if await _use_up(session, pending.id, now) else "repeated"


async def _codes_sent(
    session: AsyncSession, account_id: int, call_id: int | None, now: datetime
) -> int:
    query = select(func.count()).select_from(SmsCode).where(SmsCode.account_id == account_id)
    if call_id is None:
        query = query.where(SmsCode.call_id.is_(None), SmsCode.created_at > now - NO_CALL_WINDOW)
    else:
        query = query.where(SmsCode.call_id == call_id)
    return await session.scalar(query) or 0


async def _count_try(session: AsyncSession, code_id: int) -> bool:
    """Count a try at the code, if it is unused and has tries left."""
    result = await session.execute(
        update(SmsCode)
        .where(
            SmsCode.id == code_id,
            SmsCode.used_at.is_(None),
            SmsCode.attempts < MAX_CODE_TRIES,
        )
        .values(attempts=SmsCode.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def _use_up(session: AsyncSession, code_id: int, now: datetime) -> bool:
    """Use the code up, unless a concurrent request did: only one request registers."""
    result = await session.execute(
        update(SmsCode)
        .where(SmsCode.id == code_id, SmsCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


# --- terms and conditions --------------------------------------------------------------------


async def accept_terms(
    db: Database, number: str, version: str, call_id: int | None
) -> TermsAcceptance:
    """Store the acceptance of the current terms (version, time, call). Accepting a version
    again answers with the first acceptance."""
    if version != db.settings.terms_version:
        raise BackendError("terms_not_current", "That is not the current terms version.")
    now = db.now()
    try:
        async with db.sessions.begin() as session:
            account = await _account(session, number)
            if earlier := await _acceptance(session, account.id, version):
                return earlier
            acceptance = TermsAcceptance(
                account_id=account.id,
                version=version,
                accepted_at=now,
                call_id=await known_call(session, call_id),
            )
            session.add(acceptance)
            await session.flush()  # one acceptance per account and version
            await session.execute(
                update(Account)
                .where(Account.id == account.id)
                .values(terms_version_accepted=version)
                .execution_options(synchronize_session=False)
            )
            await _activate_when_done(session, account.id, version)
            detail = {"account": number, "version": version}
            await record_event(session, call_id, now, "terms_accepted", detail)
    except IntegrityError:
        # A concurrent request (a retry) stored the acceptance first: answer with it.
        async with db.sessions() as session:
            account = await _account(session, number)
            if earlier := await _acceptance(session, account.id, version):
                return earlier
        raise
    log.info("terms_accepted", account=number, version=version, call_id=call_id)
    return acceptance


async def _acceptance(
    session: AsyncSession, account_id: int, version: str
) -> TermsAcceptance | None:
    return await session.scalar(
        select(TermsAcceptance).where(
            TermsAcceptance.account_id == account_id, TermsAcceptance.version == version
        )
    )


# --- shared ----------------------------------------------------------------------------------


async def _activate_when_done(session: AsyncSession, account_id: int, terms_version: str) -> None:
    """Clear needs_activation once the mobile is registered and the current terms accepted.
    One UPDATE that reads both, so a mobile and an acceptance committed at the same time
    still clear it."""
    await session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            Account.needs_activation,
            Account.mobile.is_not(None),
            Account.terms_version_accepted == terms_version,
        )
        .values(needs_activation=False)
        .execution_options(synchronize_session=False)
    )


async def _account(session: AsyncSession, number: str) -> Account:
    account = await session.scalar(select(Account).where(Account.number == number))
    if account is None:
        raise BackendError("account_unknown", f"No account {number}.")
    return account
