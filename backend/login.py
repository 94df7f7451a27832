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

A login is two units of work, with the password check between them: first the caller's slot
and the lease, with the account and its tokens read once the lease is held (on PostgreSQL one
statement); then the outcome, all or nothing. A success gives the lease back and forgets the
failures in one conditional UPDATE, uses up the step, opens the session (backend/sessions.py)
and reads the vehicles the next prompt offers; if it finds its lease or its step taken
meanwhile, it writes nothing (on PostgreSQL one statement whose writes depend on both; on
SQLite a transaction rolled back) and is settled as that failure. A failure gives the lease
back and counts itself in one UPDATE; it opens no session.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

import structlog
from sqlalchemy import (
    Select,
    Table,
    Update,
    bindparam,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from backend import limits, login_tokens, sessions
from backend.bundling import RECENT_MARKS, recent_marks
from backend.call_logs import backend_event, record_event
from backend.callers import caller_key, caller_limit, throttled
from backend.columns import UtcDateTime
from backend.database import Database, OutsideConnection
from backend.errors import BackendError
from backend.models import Account, Token
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

# The statements of every login, built once with named parameters (see call_logs). The UPDATEs
# are Core statements on the table: the ORM's bulk UPDATE costs more per statement.
_ACCOUNTS = cast(Table, Account.__table__)
_COLUMNS = _ACCOUNTS.c
_LEASE = (
    update(_ACCOUNTS)
    .where(
        _COLUMNS.number == bindparam("account_number"),
        or_(_COLUMNS.login_lease_until.is_(None), _COLUMNS.login_lease_until <= bindparam("now")),
    )
    .values(login_lease=bindparam("lease"), login_lease_until=bindparam("until"))
)
_TAKE_LEASE = _LEASE.returning(_COLUMNS.id)
# The account with its tokens, one row a token (a row of NULLs for none), in Core: the ORM's
# session and its loading cost more CPU than the rows (docs/performance.md).
_TOKENS = cast(Table, Token.__table__)
_TOKEN = "token_"  # the prefix of a token's columns in the rows
_TOKEN_COLUMNS = [c.label(_TOKEN + c.key) for c in _TOKENS.c]
_ACCOUNT = (
    select(*_COLUMNS, *_TOKEN_COLUMNS)
    .outerjoin_from(_ACCOUNTS, _TOKENS, _TOKENS.c.account_id == _COLUMNS.id)
    .where(_COLUMNS.number == bindparam("number"))
)

# Each of these gives the lease back only if it is still this login's (WHERE login_lease).
_RELEASE_LEASE = (
    update(_ACCOUNTS)
    .where(_COLUMNS.id == bindparam("account_id"), _COLUMNS.login_lease == bindparam("lease"))
    .values(login_lease=None, login_lease_until=None)
)
# A success: the lease back and the failures forgotten, in one statement.
_SUCCEED = _RELEASE_LEASE.values(failed_logins=0, locked_until=None)
_SUCCEED_REHASHED = _SUCCEED.values(password_hash=bindparam("password_hash"))
# A counted failure; the one that reaches the limit locks the account, and the count starts
# afresh after the lockout, so one later slip does not re-lock. It returns the new count: 0
# when it locked.
_FAILURES = _COLUMNS.failed_logins + 1
_REACHED = _FAILURES >= bindparam("limit")
_COUNT_FAILURE = (
    update(_ACCOUNTS)
    .where(_COLUMNS.id == bindparam("account_id"))
    .values(
        failed_logins=case((_REACHED, 0), else_=_FAILURES),
        locked_until=case(
            (_REACHED, bindparam("until", type_=UtcDateTime())), else_=_COLUMNS.locked_until
        ),
    )
    .returning(_COLUMNS.failed_logins)
)
_RELEASE_AND_COUNT = _COUNT_FAILURE.where(_COLUMNS.login_lease == bindparam("lease")).values(
    login_lease=None, login_lease_until=None
)


# PostgreSQL: a success's writes in one statement, outside a transaction (SQLite has no WITH
# clauses that write, and runs them one by one in a transaction). The account's row is locked
# first, if this login still holds its lease; the token step is used up only then; and every
# other write happens only if the step was won. So a success that lost its lease or its step
# meanwhile writes nothing, as a rolled-back transaction would.
_HELD = (
    select(_COLUMNS.id)
    .where(_COLUMNS.id == bindparam("account_id"), _COLUMNS.login_lease == bindparam("lease"))
    .with_for_update()
    .cte("held")
)


@cache
def _reserve_and_read(slot: bool) -> Select[Any]:
    """PostgreSQL: the caller's slot (if `slot`), the account's lease, taken only with a slot,
    and the leased account with its tokens, in one statement (WITH clauses): 1 round trip, not
    5 (BEGIN, the two, COMMIT, the read). Its rows: the slots taken (1 or 0), whether the
    account exists, and the leased account with a token a row (NULLs: not leased). The
    account's row is the lease UPDATE's: its newest version, what the login before committed
    included (a lockout, its failures), as an UPDATE waits for and reads again a row changed
    meanwhile. Its tokens are read as of the statement's start: a token changed meanwhile (its
    step used, its revocation) is checked again by the success, whose claim uses a step up only
    if it is unused and its token not revoked (login_tokens.claim)."""
    lease = _LEASE.returning(*_COLUMNS)
    slots: Any = literal(1)
    if slot:
        slot_cte = limits.slot_statement("postgresql").cte("slot")
        lease = lease.where(exists(select(slot_cte.c.id)))
        slots = select(func.count()).select_from(slot_cte).scalar_subquery()
    leased = lease.cte("lease")
    known = exists(select(_COLUMNS.id).where(_COLUMNS.number == bindparam("account_number")))
    tokens = _TOKENS.c
    return select(
        slots.label("slots"), known.label("known"), *leased.c, *_TOKEN_COLUMNS
    ).select_from(
        select(literal(1))
        .subquery("one")
        .outerjoin(leased, true())
        .outerjoin(_TOKENS, tokens.account_id == leased.c.id)
    )


@cache
def _success(rehashed: bool, claim: Update) -> Select[Any]:
    """The success's statement for a token step's `claim` (login_tokens.claim): the lease back
    with the failures forgotten, the step used up, the session opened (the account's expired
    ones deleted), the call's event, the caller's slot given back; and it reads the recent
    vehicles. Its rows: whether the lease was still held (1 or 0) and the step won (1 or 0),
    each with a recent vehicle (one row with None for none). 1 round trip, not 4 (BEGIN, the
    step, the rest, COMMIT)."""
    tokens = claim.table.c  # type: ignore[attr-defined]
    step = (
        claim.where(exists(select(_HELD.c.id)))
        # Named, account_id stays as it is: SQLAlchemy would add the statement's parameter of
        # that name (the account's id) to this UPDATE's SET.
        .values(account_id=tokens.account_id)
        .returning(tokens.id)
        .cte("step")
    )
    won = exists(select(step.c.id))
    lease_back = (_SUCCEED_REHASHED if rehashed else _SUCCEED).where(won)
    recent = RECENT_MARKS.subquery("recent")
    counts = [select(func.count()).select_from(cte).scalar_subquery() for cte in (_HELD, step)]
    return (
        select(*counts, recent.c.vehicle_mark)
        .select_from(select(literal(1)).subquery("one").outerjoin(recent, true()))
        .order_by(recent.c.last_at.desc(), recent.c.last_id.desc())
        .add_cte(
            lease_back.cte("lease_back"),
            sessions.DELETE_EXPIRED.where(won).cte("expired"),
            sessions.new_session_row(won).cte("new_session"),
            backend_event(won).cte("login_event"),
            limits.GIVE_BACK.where(won).cte("slot_back"),
        )
    )


@dataclass(frozen=True)
class LoggedIn:
    """A successful login: the account, its new session (backend/sessions.py) and what the
    prompt after the login needs: the vehicles to offer (bundling, cancelling and enquiries
    all start there)."""

    account: Account
    session_token: str
    session_expires_at: datetime
    recent_vehicles: list[str]


async def login(
    db: Database,
    number: str,
    password: str,
    token_code: str,
    call_id: int | None = None,
    caller_id: str | None = None,
) -> LoggedIn:
    """The account and its new session when all three are right; otherwise BackendError
    (login_failed, ...)."""
    caller = caller_key(caller_id)
    throttle = caller_limit(db.settings, caller)
    now = db.now()
    attempt = _Attempt(number, call_id, caller_id, now, secrets.token_hex(16), caller, throttle)
    # Before any check: the caller's attempt slot and, with it, the account's lease; or, for a
    # caller refused a slot, the refusal.
    reserved, known, account = await _reserve(db, attempt)
    if not reserved:
        async with db.sessions.begin() as session:
            detail = {"account": number, "reason": "caller_throttled"}
            await record_event(session, call_id, now, "login_failed", detail)
            until = await limits.blocked_until(session, now, caller)
        _log_failure(attempt, "caller_throttled")
        raise throttled(now, until, throttle)
    settled = False
    try:
        if known and account is None:
            # Another login of this account is running: refused unchecked, like any failure.
            await _refused(db, attempt, "busy")
            settled = True  # in the refusal's unit of work
            raise BackendError(*FAILED)
        outcome = await _attempt(db, attempt, account, password, token_code)
        settled = True  # in the attempt's unit of work
    finally:
        if not settled:  # an error before the unit of work that settles committed
            await limits.settle(db, caller, throttle, failed=True)
    if isinstance(outcome, str):
        raise BackendError(*PUBLIC.get(outcome, FAILED))
    log.info("login_succeeded", account=number, call_id=call_id)
    return outcome


@dataclass(frozen=True)
class _Attempt:
    number: str
    call_id: int | None
    caller_id: str | None
    now: datetime
    lease: str  # the account's login lease, held by this attempt
    caller: str  # the caller number's attempt slot, reserved by this attempt
    throttle: limits.Limit


class _Lost(Exception):
    """A success found the lease or the token step taken meanwhile: its unit of work is rolled
    back, and the login settled as this failure."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _attempt(
    db: Database, at: _Attempt, account: Account | None, password: str, token_code: str
) -> LoggedIn | str:
    """One login with the account's lease held: the success, or why it fails. Its outcome, the
    lease given back and the caller's slot settled are one unit of work."""
    held = account is not None
    try:
        expired = login_tokens.expired_enrolments(account, at.now, db.settings.enrolment_expiry)
        reason, match = await _verify(db, account, password, token_code, at.now, expired)
        if account is not None and match is not None:
            new_hash = None
            if db.passwords.needs_rehash(account.password_hash):
                new_hash = await db.passwords.hash(password)  # the Argon2 profile changed since
            try:
                if db.engine.dialect.name == "postgresql" and not (expired or match.pending):
                    async with db.sessions.single() as session:
                        success = await _succeed_at_once(session, db, at, account, match, new_hash)
                else:  # the rare writes too (an enrolment expired, a new token activated)
                    async with db.sessions.begin() as session:
                        success = await _succeed(session, db, at, account, match, expired, new_hash)
                held = False
                return success
            except _Lost as lost:
                reason = lost.reason
        async with db.sessions.begin() as session:
            await _fail(session, db, at, account, reason or "", expired)
        held = False
    finally:
        if held and account is not None:  # an error before the release committed
            async with db.sessions.begin() as session:
                await _release_lease(session, account.id, at.lease)
    _log_failure(at, reason or "")
    return reason or ""


def _success_params(at: _Attempt, account: Account, new_hash: str | None) -> dict[str, Any]:
    """The parameters of _SUCCEED (or _SUCCEED_REHASHED, with the new hash)."""
    params = {"account_id": account.id, "lease": at.lease}
    if new_hash:
        params["password_hash"] = new_hash
    return params


async def _succeed(
    session: AsyncSession,
    db: Database,
    at: _Attempt,
    account: Account,
    match: login_tokens.Match,
    expired: Sequence[Token],
    new_hash: str | None,
) -> LoggedIn:
    """A successful login's unit of work: the lease given back and the failures forgotten, the
    token step used up (a new token activated), the session opened, the call's event, the
    caller's slot given back, and the account's recent vehicles read. _Lost if the lease or the
    step was taken meanwhile."""
    params = _success_params(at, account, new_hash)
    done = await session.execute(_SUCCEED_REHASHED if new_hash else _SUCCEED, params)
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise _Lost("busy")  # the lease ran out and another login took it: it may run
    if expired:
        await login_tokens.revoke(session, expired, at.now)
    if not await login_tokens.claim_step(session, match):
        raise _Lost("replayed_code")  # another login used this step since we read it
    if match.pending:
        await login_tokens.activate(session, account, match, at.now)
    token, expires_at = await sessions.open_session(session, account.id, at.call_id, db.now())
    await record_event(session, at.call_id, at.now, "login_ok", {"account": at.number})
    await limits.settle_slot(session, at.now, at.caller, at.throttle, failed=False)
    recent = await recent_marks(session, account.id)
    return LoggedIn(account, token, expires_at, recent)


async def _succeed_at_once(
    session: OutsideConnection,
    db: Database,
    at: _Attempt,
    account: Account,
    match: login_tokens.Match,
    new_hash: str | None,
) -> LoggedIn:
    """_succeed on PostgreSQL, in one statement (_success), when it has none of the rare
    writes."""
    claim, params = login_tokens.claim(match)
    token, expires_at, opening = sessions.new_session(account.id, at.call_id, db.now())
    params |= _success_params(at, account, new_hash) | opening
    params |= {"call_id": at.call_id, "at": at.now, "name": "login_ok"}
    params["detail"] = {"account": at.number}
    params["key"] = at.caller if at.throttle.failures else None  # None: no slot was taken
    rows = (await session.execute(_success(new_hash is not None, claim), params)).all()
    held, won = rows[0][:2]
    if held != 1:
        raise _Lost("busy")  # as in _succeed
    if won != 1:
        raise _Lost("replayed_code")
    recent = [mark for *_, mark in rows if mark is not None]
    return LoggedIn(account, token, expires_at, recent)


async def _fail(
    session: AsyncSession,
    db: Database,
    at: _Attempt,
    account: Account | None,
    reason: str,
    expired: Sequence[Token],
) -> None:
    """A failed login's unit of work: the lease given back, the failure counted (the account's
    and the caller's), the call's event."""
    if account is not None:
        if reason in COUNTED and not _locked(account, at.now):
            await _count_failure(session, account, at, db)
        else:
            await _release_lease(session, account.id, at.lease)
    if expired:
        await login_tokens.revoke(session, expired, at.now)
    detail = {"account": at.number, "reason": reason}
    await record_event(session, at.call_id, at.now, "login_failed", detail)
    failed = reason in CALLER_COUNTED
    await limits.settle_slot(session, at.now, at.caller, at.throttle, failed)


async def _refused(db: Database, at: _Attempt, reason: str) -> None:
    """A login refused before any check: the call log and the log say why; the attempt's slot
    is kept, as a failure's, in the same unit of work."""
    async with db.sessions.begin() as session:
        now = db.now()
        detail = {"account": at.number, "reason": reason}
        await record_event(session, at.call_id, now, "login_failed", detail)
        await limits.settle_slot(session, now, at.caller, at.throttle, failed=True)
    _log_failure(at, reason)


def _log_failure(at: _Attempt, reason: str) -> None:
    log.info(
        "login_failed",
        account=at.number,
        reason=reason,
        call_id=at.call_id,
        caller_id=at.caller_id,
    )


async def _reserve(db: Database, at: _Attempt) -> tuple[bool, bool, Account | None]:
    """Whether the caller's attempt slot was given (False: refused, blocked or the window full);
    whether the account exists; and, with a slot, the account with its tokens if its login lease
    was taken (None: another login holds it, or no such account). The slot and the lease are
    each one conditional write, so of attempts arriving together (in any worker) only those with
    a slot go on, and one of them per account; committed at once, together. The account is read
    once the lease is held: it sees all that the login before this one committed (its failures,
    a lockout). On PostgreSQL one statement (_reserve_and_read), on SQLite a transaction and the
    read."""
    params = {
        "account_number": at.number,
        "now": at.now,
        "lease": at.lease,
        "until": at.now + LOGIN_LEASE,
    }
    if db.engine.dialect.name == "postgresql":
        if at.throttle.failures:  # else no slot to take: the lease alone
            params |= limits.slot_params(at.now, at.caller, at.throttle)
        async with db.sessions.single() as connection:
            statement = _reserve_and_read(bool(at.throttle.failures))
            rows = (await connection.execute(statement, params)).mappings().all()
        return rows[0]["slots"] == 1, rows[0]["known"], _account_of(rows)
    async with db.sessions.begin() as session:
        if not await limits.take_slot(session, at.now, at.caller, at.throttle):
            return False, False, None
        leased = await session.scalar(_TAKE_LEASE, params)
    try:
        async with db.sessions.connect() as connection:
            rows = await _read_account(connection, at.number)
    except BaseException:
        if leased is not None:  # the lease back, so that the account is not kept waiting
            async with db.sessions.begin() as session:
                await _release_lease(session, leased, at.lease)
        await limits.settle(db, at.caller, at.throttle, failed=True)
        raise
    return True, bool(rows), _account_of(rows) if leased is not None else None


async def _read_account(connection: OutsideConnection, number: str) -> Sequence[RowMapping]:
    """The account with its tokens, a row a token (SQLite: read after the lease is taken)."""
    return (await connection.execute(_ACCOUNT, {"number": number})).mappings().all()


def _account_of(rows: Sequence[RowMapping]) -> Account | None:
    """The account with its tokens from the rows of a join (a row a token), as objects of no
    session (None: no account in them)."""
    if not rows or rows[0]["id"] is None:
        return None
    account = Account(**{c.key: rows[0][c.key] for c in _COLUMNS})
    tokens = [
        Token(**{c.key: row[_TOKEN + c.key] for c in _TOKENS.c})
        for row in rows
        if row[_TOKEN + "id"] is not None
    ]
    set_committed_value(account, "tokens", tokens)
    return account


async def _release_lease(session: AsyncSession, account_id: int, lease: str) -> None:
    """Give the lease back, if it is still ours (else it ran out and another login took it)."""
    await session.execute(_RELEASE_LEASE, {"account_id": account_id, "lease": lease})


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


async def _count_failure(
    session: AsyncSession, account: Account, at: _Attempt, db: Database
) -> None:
    """A counted failure, with the lease given back in the same statement (the count alone if
    the lease ran out meanwhile: the failure still counts)."""
    until = at.now + db.settings.lockout_period
    params = {"account_id": account.id, "limit": db.settings.lockout_failures, "until": until}
    failures = await session.scalar(_RELEASE_AND_COUNT, params | {"lease": at.lease})
    if failures is None:
        failures = await session.scalar(_COUNT_FAILURE, params)
    if failures == 0:
        log.warning("account_locked", account=account.number, until=until.isoformat())
