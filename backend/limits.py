"""Attempt limits that hold however many attempts arrive together.

A key (a caller number for phone logins, a name for console sign-ins) may make `limit` failed
attempts in a fixed window; then it is refused for a while. An attempt *reserves* its slot
before anything is checked, in one conditional UPDATE: at the limit the UPDATE matches no row
and the attempt is refused unchecked, so fifty attempts sent at once are still at most `limit`
checks. A success gives its slot back; a failure keeps it, and the failure that fills the
window blocks the key. Rows live in `caller_throttles` (the key in its `caller` column).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

import structlog
from sqlalchemy import Table, and_, bindparam, case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from backend.database import Database
from backend.models import CallerThrottle, UtcDateTime

log = structlog.get_logger(__name__)

MAX_KEY = 64  # the column's length
# The statements are Core statements on the table: the ORM's bulk UPDATE costs more per statement.
_TABLE = cast(Table, CallerThrottle.__table__)
_ROW = _TABLE.c


@dataclass(frozen=True)
class Limit:
    failures: int  # allowed in a window; 0: no limit
    window: timedelta
    block: timedelta  # how long a key that filled its window is refused


async def reserve(db: Database, key: str, limit: Limit) -> bool:
    """Take one attempt slot for `key`; False: refused (blocked, or the window is full)."""
    if limit.failures == 0:
        return True
    async with db.sessions.begin() as session:
        return await take_slot(session, db.now(), key, limit)


async def take_slot(session: AsyncSession, now: datetime, key: str, limit: Limit) -> bool:
    """`reserve` within the caller's unit of work (committed with it)."""
    if limit.failures == 0:
        return True
    dialect = (await session.connection()).dialect.name
    return await session.scalar(slot_statement(dialect), slot_params(now, key, limit)) is not None


def slot_params(now: datetime, key: str, limit: Limit) -> dict[str, Any]:
    """The parameters of slot_statement."""
    return {
        "key": key,
        "now": now,
        "restart": now,
        "unblocked": now,
        "stale_before": now - limit.window,
        "limit": limit.failures,
    }


@cache
def slot_statement(dialect: str) -> ReturningInsert[int]:
    """One statement, built once per dialect: a new key's row is its first slot; a known key's
    row is updated only if a slot is free (every SET reads the row as it was, and the WHERE is
    the reservation)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stale = _ROW.window_started_at <= bindparam("stale_before")
    return (
        insert(_TABLE)
        .values(caller=bindparam("key"), failures=1, window_started_at=bindparam("now"))
        .on_conflict_do_update(
            index_elements=[_ROW.caller],
            set_={
                "failures": case((stale, 1), else_=_ROW.failures + 1),
                "window_started_at": case(
                    (stale, bindparam("restart", type_=UtcDateTime())),
                    else_=_ROW.window_started_at,
                ),
            },
            where=and_(
                or_(_ROW.blocked_until.is_(None), _ROW.blocked_until <= bindparam("unblocked")),
                or_(stale, _ROW.failures < bindparam("limit")),
            ),
        )
        .returning(_ROW.id)
    )


_BLOCKED_UNTIL = select(_ROW.blocked_until).where(_ROW.caller == bindparam("key"))


async def blocked_until(session: AsyncSession, now: datetime, key: str) -> datetime | None:
    """When a blocked key may try again (None: not blocked now), within the caller's unit of
    work."""
    until = await session.scalar(_BLOCKED_UNTIL, {"key": key})
    return until if until is not None and until > now else None


async def settle(db: Database, key: str, limit: Limit, failed: bool) -> None:
    """The reserved attempt's outcome: a success frees its slot, a failure keeps it (and blocks
    the key when the window is full)."""
    if limit.failures == 0:
        return
    async with db.sessions.begin() as session:
        await settle_slot(session, db.now(), key, limit, failed)


async def settle_slot(
    session: AsyncSession, now: datetime, key: str, limit: Limit, failed: bool
) -> None:
    """`settle` within the caller's unit of work (committed with it)."""
    if limit.failures == 0:
        return
    if not failed:
        await session.execute(GIVE_BACK, {"key": key})
        return
    until = now + limit.block
    params = {"key": key, "limit": limit.failures, "now": now, "restart": now, "until": until}
    if await session.scalar(_KEEP, params) is not None:
        log.warning("attempts_blocked", key=key, until=until.isoformat())


# A success gives its slot back; a failure keeps it, and the one that fills the window blocks
# the key (built once, with named parameters).
GIVE_BACK = (
    update(_TABLE)
    .where(_ROW.caller == bindparam("key"), _ROW.failures > 0)
    .values(failures=_ROW.failures - 1)
)
_KEEP = (
    update(_TABLE)
    .where(
        _ROW.caller == bindparam("key"),
        _ROW.failures >= bindparam("limit"),
        or_(_ROW.blocked_until.is_(None), _ROW.blocked_until <= bindparam("now")),
    )
    .values(failures=0, window_started_at=bindparam("restart"), blocked_until=bindparam("until"))
    .returning(_ROW.id)
)
