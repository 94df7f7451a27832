"""What the administration modules share: the error they raise, and lookups that raise it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.models import Account, Token

MAX_REPORTED = 20  # problems listed at once
CHUNK = 500  # values per IN (...) list: far below SQLite's and PostgreSQL's limits


class AdminError(Exception):
    """Bad administrative input: duplicate, unknown or malformed."""


async def account_by_number(session: AsyncSession, number: str) -> Account:
    account = await session.scalar(select(Account).where(Account.number == number))
    if account is None:
        raise AdminError(f"no account {number}")
    return account


async def token_by_serial(session: AsyncSession, serial: str) -> Token:
    token = await session.scalar(select(Token).where(Token.serial == serial))
    if token is None:
        raise AdminError(f"no token {serial}")
    return token


async def existing_values(session: AsyncSession, column: object, values: list[str]) -> set[str]:
    """Which of `values` are already in `column` (a unique string column)."""
    found: set[str] = set()
    for i in range(0, len(values), CHUNK):
        chunk = values[i : i + CHUNK]
        found |= set(await session.scalars(select(column).where(column.in_(chunk))))  # type: ignore[attr-defined,call-overload]
    return found


def nothing_imported(problems: list[str]) -> str:
    shown = problems[:MAX_REPORTED]
    if len(problems) > MAX_REPORTED:
        shown.append(f"... and {len(problems) - MAX_REPORTED} more")
    return "nothing imported:\n  " + "\n  ".join(shown)
