"""The backend's connections outside transactions (`Sessions.connect`, `Sessions.single`, on
both databases): a connection is taken from the pool by the block's first statement and given
back at the block's end, a failed statement's block and a cancelled one included, so neither
drains the pool; a statement's rows are read as SQLAlchemy's own connection gives them."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError

from backend.database import Database
from backend.models import Account
from tests.support.databases import DATABASES
from tests.support.truckers import MakeTrucker


@pytest.fixture(params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def checked_out(db: Database) -> int:
    return db.sessions.outside.sync_engine.pool.checkedout()  # type: ignore[attr-defined, no-any-return]


async def test_a_connection_is_taken_by_the_first_statement_and_given_back_at_the_end(
    db: Database, make_trucker: MakeTrucker
) -> None:
    account = (await make_trucker()).account
    assert checked_out(db) == 0
    async with db.sessions.connect() as connection:
        assert checked_out(db) == 0  # no statement yet: no connection
        rows = (await connection.execute(select(Account.number))).mappings().all()
        assert checked_out(db) == 1
        assert [row["number"] for row in rows] == [account]
        assert await connection.scalar(select(Account.number)) == account
        assert checked_out(db) == 1  # the same connection for the block's next statement
    assert checked_out(db) == 0


async def test_failed_statements_give_their_connections_back(db: Database) -> None:
    size = db.sessions.outside.sync_engine.pool.size()  # type: ignore[attr-defined]
    for _ in range(size + 3):  # more than the pool holds: a kept connection would drain it
        with pytest.raises(DBAPIError):
            async with db.sessions.single() as connection:
                await connection.execute(text("SELECT no_such_column FROM accounts"))
        assert checked_out(db) == 0
    async with db.sessions.connect() as connection:
        assert await connection.scalar(text("SELECT 1")) == 1


async def test_a_unit_cancelled_in_its_return_still_gives_its_connection_back(
    db: Database,
) -> None:
    """A request's task may be cancelled (a shutdown): cancelled as it gives its connection
    back, the unit still does. The pool's proxies are held here, so that only an explicit
    return counts, not the garbage collector's."""
    held: list[object] = []
    pool = db.sessions.outside.sync_engine.pool
    event.listen(pool, "checkout", lambda _dbapi, _record, proxy: held.append(proxy))

    async def unit() -> None:
        async with db.sessions.connect() as connection:
            await connection.execute(text("SELECT 1"))
            task = asyncio.current_task()
            assert task is not None
            task.cancel()  # delivered at the return's first wait, if it has one

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(unit())
    assert held and checked_out(db) == 0
    async with db.sessions.connect() as connection:
        assert await connection.scalar(text("SELECT 1")) == 1
