"""Login: account number, password and token code, verified together.

A stranger learns only "failed" of an account: `locked` and `token_expired` only after the
right password, `no_service` only after the right password and code (docs/call-flow.md, 2).
Five failures in a row lock the account for 15 minutes (settings: `lockout_*`). A token's time
step is used up only by a successful login; failures count toward the lockout.

Against one caller trying many accounts (each staying under its lockout), failed logins are
also counted per caller number (backend/limits.py): past `caller_throttle_failures` within the
window, that number's logins are refused unchecked for `caller_throttle_period` with
`caller_throttled` and the minutes left (about the number only). Each attempt reserves its
slot before any check, so attempts sent together are counted too. Callers without
a number are not throttled by default (`caller_throttle_anonymous_failures` = 0): one attacker
withholding the number would otherwise lock every such caller out; the account lockout holds.

A replacement token (FortiToken Mobile enrolment) is `pending`: the account's old token keeps
working until the first login with a correct code of the new one, which activates it and
revokes every other token of the account, in the login's transaction. A pending token older
than `enrolment_expiry` (24 h) is refused, and the next login of its account revokes it.

Event (HOTP) tokens log in like the others: their "step" is the counter (otp.verify_hotp looks
ahead from the next one expected, `tokens.counter`), claimed the same way.

Concurrency: a login first takes its account's lease (one conditional UPDATE); a login that
finds it held is refused unchecked with the generic failure. So the logins of one account run
one at a time in every worker: at most `lockout_failures` codes are compared before the lock,
Argon2 work per account is one verification at a time, and a success cannot clear a lock a
concurrent failure set. A step is claimed only if it is later than the last one used, so two
logins with one code (of different accounts' leases, or after a lease ran out) cannot both win.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from backend import limits, login_tokens, sessions
from backend.call_logs import record_event
from backend.callers import caller_key, caller_limit, throttled
from backend.database import Database
from backend.errors import BackendError
from backend.models import Account, Token
from backend.settings import BackendSettings
from backend.timezones import hong_kong_date

log = structlog.get_logger(__name__)

SERVICE = "road_bundling"
# Reasons are kept in the call log for supervisors; callers hear only the public code.
COUNTED = frozenset({"wrong_password", "wrong_code", "replayed_code", "no_token"})
# What counts against a caller number: every guess that failed, whatever the account.
CALLER_COUNTED = COUNTED | {"account_unknown", "locked", "busy"}
# Longer than any login takes (Argon2 and a few queries): a lease a crashed worker left runs out.
LOGIN_LEASE = timedelta(seconds=60)
PUBLIC = {
    "locked": ("locked", "This account cannot log in now."),
    "token_expired": ("token_expired", "The security token has expired."),
    "no_service": ("no_service", "This account is not enrolled for road bundling."),
}
FAILED = ("login_failed", "The account number, password or security code is not correct.")

# The statements of every login, built once with named parameters (see call_logs).
_TAKE_LEASE = (
    update(Account)
    .where(
        Account.number == bindparam("account_number"),
        or_(Account.login_lease_until.is_(None), Account.login_lease_until <= bindparam("now")),
    )
    .values(login_lease=bindparam("lease"), login_lease_until=bindparam("until"))
    .returning(Account.id)
    .execution_options(synchronize_session=False)
)
_ACCOUNT = (
    select(Account).where(Account.number == bindparam("number")).options(joinedload(Account.tokens))
)
_RELEASE_LEASE = (
    update(Account)
    .where(Account.id == bindparam("account_id"), Account.login_lease == bindparam("lease"))
    .values(login_lease=None, login_lease_until=None)
    .execution_options(synchronize_session=False)
)
_RESET_FAILURES = (
    update(Account)
    .where(Account.id == bindparam("account_id"))
    .values(failed_logins=0, locked_until=None)
    .execution_options(synchronize_session=False)
)


async def login(
    db: Database,
    number: str,
    password: str,
    token_code: str,
    call_id: int | None = None,
    caller_id: str | None = None,
) -> Account:
    """The account when all three are right; otherwise BackendError (login_failed, ...)."""
    caller = caller_key(caller_id)
    throttle = caller_limit(db.settings, caller)
    now, lease = db.now(), secrets.token_hex(16)
    # Before any check, one unit of work: the caller's attempt slot, the account's lease, and
    # the account with its tokens.
    async with db.sessions.begin() as session:
        reserved = await limits.take_slot(session, now, caller, throttle)
        leased = reserved and await _take_lease(session, number, lease, now)
        account = await _account(session, number) if reserved else None
    if not reserved:
        await _refused(db, number, "caller_throttled", call_id, caller_id)
        raise throttled(db.now(), await limits.blocked_until(db, caller), throttle)
    settled = False
    try:
        if account is not None and not leased:
            # Another login of this account is running: refused unchecked, like any failure.
            await _refused(db, number, "busy", call_id, caller_id)
            reason: str | None = "busy"
        else:
            attempt = _Attempt(number, call_id, caller_id, now, lease, caller, throttle)
            reason = await _attempt(db, attempt, account, password, token_code)
            settled = True  # in the attempt's unit of work
    finally:
        if not settled:  # busy, or an error before the attempt's unit of work committed
            await limits.settle(db, caller, throttle, failed=True)
    if reason is not None or account is None:
        code, message = PUBLIC.get(reason or "", FAILED)
        raise BackendError(code, message)
    log.info("login_succeeded", account=number, call_id=call_id)
    return account


@dataclass(frozen=True)
class _Attempt:
    number: str
    call_id: int | None
    caller_id: str | None
    now: datetime
    lease: str  # the account's login lease, held by this attempt
    caller: str  # the caller number's attempt slot, reserved by this attempt
    throttle: limits.Limit


async def _attempt(
    db: Database, at: _Attempt, account: Account | None, password: str, token_code: str
) -> str | None:
    """One login with the account's lease held: why it fails (None: it succeeds). Its outcome,
    the lease given back and the caller's slot settled are one unit of work."""
    now = at.now
    held = account is not None
    try:
        expired = login_tokens.expired_enrolments(account, now, db.settings.enrolment_expiry)
        reason, match = await _verify(db, account, password, token_code, now, expired)
        new_hash = None
        if account and match and db.passwords.needs_rehash(account.password_hash):
            new_hash = await db.passwords.hash(password)  # the Argon2 profile changed since

        async with db.sessions.begin() as session:
            if account is not None:
                held = False
                if not await _release_lease(session, account.id, at.lease) and reason is None:
                    reason, match = "busy", None  # the lease ran out: another login may run
            if expired:
                await login_tokens.revoke(session, expired, now)
            if match is not None and not await login_tokens.claim_step(session, match):
                reason = "replayed_code"  # another login used this step since we read it
            if account is not None and reason is None and match is not None:
                await _reset_failures(session, account, new_hash)
                await sessions.delete_expired(session, account.id, now)  # before the new one
                if match.pending:
                    await login_tokens.activate(session, account, match, now)
            elif account is not None and reason in COUNTED and not _locked(account, now):
                await _count_failure(session, account, now, db.settings)
            detail = {"account": at.number} | ({"reason": reason} if reason else {})
            name = "login_failed" if reason else "login_ok"
            await record_event(session, at.call_id, now, name, detail)
            failed = reason in CALLER_COUNTED
            await limits.settle_slot(session, now, at.caller, at.throttle, failed)
    finally:
        if held and account is not None:  # an error before the release: do not keep the lease
            async with db.sessions.begin() as session:
                await _release_lease(session, account.id, at.lease)
    if reason is not None:
        log.info(
            "login_failed",
            account=at.number,
            reason=reason,
            call_id=at.call_id,
            caller_id=at.caller_id,
        )
    return reason


async def _refused(
    db: Database,
    number: str,
    reason: str,
    call_id: int | None,
    caller_id: str | None,
) -> None:
    """A login refused before any check: the call log and the log say why."""
    async with db.sessions.begin() as session:
        detail = {"account": number, "reason": reason}
        await record_event(session, call_id, db.now(), "login_failed", detail)
    log.info("login_failed", account=number, reason=reason, call_id=call_id, caller_id=caller_id)


async def _take_lease(session: AsyncSession, number: str, lease: str, now: datetime) -> bool:
    """The account's login lease, if no other login holds it: one conditional UPDATE, so of
    attempts arriving together (in any worker) one goes on and the others are refused."""
    params = {"account_number": number, "now": now, "lease": lease, "until": now + LOGIN_LEASE}
    return await session.scalar(_TAKE_LEASE, params) is not None


async def _account(session: AsyncSession, number: str) -> Account | None:
    """The account with its tokens, in one query (a join, not a second SELECT)."""
    found = await session.scalars(_ACCOUNT, {"number": number})
    return found.unique().one_or_none()  # all rows: every token


async def _release_lease(session: AsyncSession, account_id: int, lease: str) -> bool:
    """Give the lease back; False: it was no longer ours (it ran out and another took it)."""
    result = await session.execute(_RELEASE_LEASE, {"account_id": account_id, "lease": lease})
    return result.rowcount == 1  # type: ignore[attr-defined]


async def _verify(
    db: Database,
    account: Account | None,
    password: str,
    token_code: str,
    now: datetime,
    expired: Sequence[Token] = (),
) -> tuple[str | None, login_tokens.Match | None]:
    """Why the login fails (None: it succeeds), and the token step it would use up. `expired`
    tokens (enrolments never activated in time) are not tried."""
    # Verify even for an unknown account (a decoy hash), so it is not faster to refuse.
    password_ok = await db.passwords.verify(account.password_hash if account else None, password)
    if account is None:
        return "account_unknown", None
    if not password_ok:
        return "wrong_password", None
    if _locked(account, now):
        return "locked", None
    tokens = [t for t in account.tokens if t.status != "revoked" and t not in expired]
    if not tokens:
        return "no_token", None
    today = hong_kong_date(now)
    usable = [t for t in tokens if t.expires_on is None or t.expires_on >= today]
    if not usable:
        return "token_expired", None
    match, replayed = login_tokens.match_code(db, usable, token_code, now)
    if match is None:
        return ("replayed_code" if replayed else "wrong_code"), None
    if SERVICE not in account.services:
        return "no_service", None
    return None, match


def _locked(account: Account | None, now: datetime) -> bool:
    """Locked after too many failures, or by an administrator (status locked or disabled)."""
    if account is None:
        return False
    return account.status != "active" or (
        account.locked_until is not None and account.locked_until > now
    )


async def _reset_failures(session: AsyncSession, account: Account, new_hash: str | None) -> None:
    statement = _RESET_FAILURES
    if new_hash:  # the Argon2 profile changed since the hash was made
        statement = statement.values(password_hash=new_hash)
    await session.execute(statement, {"account_id": account.id})


async def _count_failure(
    session: AsyncSession, account: Account, now: datetime, settings: BackendSettings
) -> None:
    failures = await session.scalar(
        update(Account)
        .where(Account.id == account.id)
        .values(failed_logins=Account.failed_logins + 1)
        .returning(Account.failed_logins)
        .execution_options(synchronize_session=False)
    )
    if failures is not None and failures >= settings.lockout_failures:
        # The count starts afresh after the lockout, so one later slip does not re-lock.
        until = now + settings.lockout_period
        await session.execute(
            update(Account)
            .where(Account.id == account.id)
            .values(failed_logins=0, locked_until=until)
            .execution_options(synchronize_session=False)
        )
        log.warning("account_locked", account=account.number, until=until.isoformat())
