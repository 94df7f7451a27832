"""A login's token part (backend/login.py): which token step a code matches, using the step up,
and a new token's first correct code activating it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import Table, Update, bindparam, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

import otp
from backend.database import Database
from backend.models import Account, Token

log = structlog.get_logger(__name__)

# Core statements on the table, built once with named parameters (see call_logs): the ORM's
# bulk UPDATE costs more per statement.
_TOKENS = cast(Table, Token.__table__)
_COLUMNS = _TOKENS.c
# Using up a step (and every earlier one) only if no login used it, or a later one, meanwhile,
# and the token was not revoked meanwhile (a login may have read its tokens before: login.py).
_USABLE = _COLUMNS.status != "revoked"
_CLAIM_COUNTER = (
    update(_TOKENS)
    .where(
        _COLUMNS.id == bindparam("token_id"),
        _USABLE,
        or_(_COLUMNS.counter.is_(None), _COLUMNS.counter <= bindparam("step")),
    )
    .values(counter=bindparam("next"))
)
_CLAIM_TIME_STEP = (
    update(_TOKENS)
    .where(
        _COLUMNS.id == bindparam("token_id"),
        _USABLE,
        or_(_COLUMNS.last_used_step.is_(None), _COLUMNS.last_used_step < bindparam("step")),
    )
    .values(last_used_step=bindparam("used"), drift=bindparam("drift"))
)
_REVOKE_PENDING = (
    update(_TOKENS)
    .where(_COLUMNS.id.in_(bindparam("token_ids", expanding=True)), _COLUMNS.status == "pending")
    .values(status="revoked", revoked_at=bindparam("now"))
)
_ACTIVATE = update(_TOKENS).where(_COLUMNS.id == bindparam("token_id")).values(status="active")
_REVOKE_OTHERS = (
    update(_TOKENS)
    .where(
        _COLUMNS.account_id == bindparam("owner_id"),
        _COLUMNS.id != bindparam("token_id"),
        _COLUMNS.status != "revoked",
    )
    .values(status="revoked", revoked_at=bindparam("now"))
)


@dataclass(frozen=True)
class Match:
    token_id: int
    serial: str
    type: otp.OtpType
    step: int  # totp: the time step; hotp: the counter
    drift: int  # totp: the token's total drift, in steps
    pending: bool  # a new token's first correct code: the login activates it


def match_code(
    db: Database, tokens: Sequence[Token], code: str, now: datetime
) -> tuple[Match | None, bool]:
    """The token step `code` matches: a time step centred on the token's remembered drift, or
    a counter from the token's next one."""
    replayed = False
    for token in tokens:
        seed = db.seeds.decrypt(token.seed_encrypted)
        if token.type == "hotp":
            result = otp.verify_hotp(seed, code, token.profile, token.counter or 0)
        else:
            last_used = token.last_used_step
            result = otp.verify(seed, code, token.profile, now, last_used, drift=token.drift)
        if result.ok and result.step is not None:
            pending = token.status == "pending"
            match = Match(token.id, token.serial, token.type, result.step, result.drift, pending)
            return match, False
        replayed = replayed or result.replayed
    return None, replayed


def expired_enrolments(account: Account | None, now: datetime, expiry: timedelta) -> list[Token]:
    """The account's pending tokens (FortiToken Mobile enrolments) not activated in time."""
    if account is None:
        return []
    return [
        token
        for token in account.tokens
        if token.status == "pending"
        and (token.created_at is None or token.created_at + expiry <= now)
    ]


async def revoke(session: AsyncSession, tokens: Sequence[Token], now: datetime) -> None:
    await session.execute(_REVOKE_PENDING, {"token_ids": [t.id for t in tokens], "now": now})
    for token in tokens:
        log.warning("enrolment_expired", serial=token.serial, created_at=str(token.created_at))


def claim(match: Match) -> tuple[Update, dict[str, Any]]:
    """The UPDATE that uses up the step (and every earlier one), only if no login used it (or a
    later one) and its token was not revoked meanwhile, and its parameters."""
    params = {"token_id": match.token_id, "step": match.step}
    if match.type == "hotp":
        return _CLAIM_COUNTER, params | {"next": match.step + 1}
    return _CLAIM_TIME_STEP, params | {"used": match.step, "drift": match.drift}


async def claim_step(session: AsyncSession, match: Match) -> bool:
    """Use up the step (claim); False if another login used it meanwhile."""
    statement, params = claim(match)
    result = await session.execute(statement, params)
    return result.rowcount == 1  # type: ignore[attr-defined]


async def activate(session: AsyncSession, account: Account, match: Match, now: datetime) -> None:
    """The new token proved itself: it becomes the account's token, every other one is revoked."""
    await session.execute(_ACTIVATE, {"token_id": match.token_id})
    params = {"owner_id": account.id, "token_id": match.token_id, "now": now}
    revoked = await session.execute(_REVOKE_OTHERS, params)
    log.info(
        "token_activated",
        account=account.number,
        serial=match.serial,
        revoked=revoked.rowcount,  # type: ignore[attr-defined]
    )
