"""The database and what every unit of work needs with it: sessions, the clock, the password
hasher, the seed cipher, the SMS codes and the SMS sender. Opened once per process (the web
app's cleanup_ctx, or a CLI run)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import InstrumentedAttribute

from backend.models import Base
from backend.security import Passwords, SeedCipher, SmsCodes
from backend.settings import BackendSettings
from backend.sms import SmsSender, sender_for

SQLITE_BUSY_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Database:
    settings: BackendSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    passwords: Passwords
    seeds: SeedCipher
    sms_codes: SmsCodes
    sms_sender: SmsSender

    def now(self) -> datetime:
        return self.settings.clock()


@asynccontextmanager
async def open_database(
    settings: BackendSettings, sms_sender: SmsSender | None = None
) -> AsyncIterator[Database]:
    """Connect, create missing tables (migrations come later), and dispose of the pool on exit.
    SMS go through `sms_sender`, by default the one `settings.sms_sender` names."""
    engine = _engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield Database(
            settings=settings,
            engine=engine,
            # expire_on_commit=False: objects stay readable after commit, for building replies.
            sessions=async_sessionmaker(engine, expire_on_commit=False),
            passwords=Passwords(settings.argon2_profile),
            seeds=SeedCipher(settings.secret_key),
            sms_codes=SmsCodes(settings.secret_key),
            sms_sender=sms_sender or sender_for(settings.sms_sender),
        )
    finally:
        await engine.dispose()


async def unused_number(
    session: AsyncSession, column: InstrumentedAttribute[str], new: Callable[[], str]
) -> str:
    """A fresh random number not yet in `column`. Random numbers are not guessable from one
    another; the unique constraint still guards the (tiny) window between check and insert."""
    while True:
        number = new()
        if await session.scalar(select(column).where(column == number)) is None:
            return number


def _engine(url: str) -> AsyncEngine:
    # hide_parameters: SQL errors and logs never carry row values (hashes, seeds, inputs).
    engine = create_async_engine(url, hide_parameters=True)
    if engine.dialect.name == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers work during a write; the busy timeout makes concurrent writers queue
    instead of failing with 'database is locked'; SQLite checks foreign keys only when asked."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
