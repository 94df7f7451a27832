"""The backend's connections outside transactions (`Sessions.connect`, `Sessions.single`, on
both databases): a connection is taken from the pool by the block's first statement and given
back at the block's end, a failed statement's block included, so failures never drain the
pool; a statement's rows are read as SQLAlchemy's own connection gives them."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
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
