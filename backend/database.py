"""The database and what every unit of work needs with it: sessions, the clock, the password
hasher, the seed cipher, the SMS codes and the SMS sender. Opened once per process (the web
app's cleanup_ctx, or a CLI run), which first brings the schema to the newest Alembic revision
(backend/migrations/). SQLite is the embedded default; PostgreSQL (asyncpg) is for production."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVarTuple, overload

import structlog
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    Connection,
    CursorResult,
    Executable,
    Select,
    bindparam,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.selectable import TypedReturnsRows
from sqlalchemy.util.concurrency import greenlet_spawn

from backend.models import Base
from backend.security import Passwords, SeedCipher, SmsCodes
from backend.settings import BackendSettings
from backend.sms import SmsSender, sender_for
from formats.json_text import json_text

log = structlog.get_logger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_WAL_ATTEMPTS = 5
# How a SQLite transaction begins, as a connection execution option (the "begin" listener reads
# it): "BEGIN" (the default: reads), "BEGIN IMMEDIATE" (units of work that write), or None (the
# caller begins itself: the migrations, which switch a pragma first, outside any transaction).
SQLITE_BEGIN = "ivrs_sqlite_begin"
ALEMBIC_INI = Path(__file__).with_name("alembic.ini")
# pg_advisory_xact_lock key: processes starting together migrate one after the other.
MIGRATION_LOCK = 0x1FC5_2265


class Sessions(async_sessionmaker[AsyncSession]):
    """`sessions()` for reading; `sessions.begin()` for a unit of work that writes, committed
    at the end of the block.

    Reads run without a transaction (autocommit): each statement is atomic and sees the
    database as of its start, and a read costs no BEGIN and no ROLLBACK, two round trips to
    PostgreSQL (and, on SQLite, two hops to aiosqlite's thread) of a one-statement request's
    four. A read that must see several statements consistently uses `sessions.begin()`.

    On SQLite a unit of work begins with BEGIN IMMEDIATE: it takes the write lock at once, and
    waits for it (busy timeout) while another writer holds it. A plain (deferred) BEGIN would
    read first and ask for the lock only at its first write, when SQLite must refuse it at once
    ("database is locked") if another writer committed since its read. The writers of this
    process also queue on an asyncio lock, first come first served: SQLite's busy handler
    polls, with sleeps growing to 100 ms, and under load left some writers waiting for seconds
    while later ones got in. PostgreSQL locks rows, not the database: its writers never queue.
    """

    def __init__(self, engine: AsyncEngine, outside: AsyncEngine, **options: Any) -> None:
        """`engine` for units of work, `outside` for the work outside transactions (the two of
        make_engines)."""
        super().__init__(engine, **options)
        self._writer = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self.outside = outside
        self._reads = async_sessionmaker(outside, **options)

    def __call__(self, **options: Any) -> AsyncSession:
        """A session for reading, outside any transaction."""
        return self._reads(**options)

    def connect(self) -> OutsideConnection:
        """A connection outside any transaction, as `sessions()`, for Core statements (their
        rows, no ORM objects): a session costs the backend more CPU a unit of work than the
        connection under it (docs/performance.md)."""
        return OutsideConnection(self.outside)

    def _writing_session(self) -> AsyncSession:
        return super().__call__()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:  # type: ignore[override]
        async with self._writers_turn(), self._writing_session() as session, session.begin():
            if self._writer is not None:
                await session.connection(execution_options={SQLITE_BEGIN: "BEGIN IMMEDIATE"})
            yield session

    @asynccontextmanager
    async def single(self) -> AsyncIterator[OutsideConnection]:
        """A unit of work of one statement (one INSERT or UPDATE, atomic by itself), on a
        connection (`connect`): it runs outside a transaction, as reads do, committed as it runs
        (on SQLite, in its turn with the other writers). Two statements need `begin()`."""
        async with self._writers_turn(), self.connect() as connection:
            yield connection

    @asynccontextmanager
    async def _writers_turn(self) -> AsyncIterator[None]:
        """SQLite: this process's writers one at a time, in order (PostgreSQL: at once)."""
        if self._writer is None:
            yield
            return
        if _writing.get():
            # It would wait for itself: fail at once rather than hang.
            raise RuntimeError("a unit of work that writes was begun inside another one")
        async with self._writer:
            token = _writing.set(True)
            try:
                yield
            finally:
                _writing.reset(token)


_Row = TypeVarTuple("_Row")  # a statement's column types (as SQLAlchemy's own overloads)


class OutsideConnection:
    """A connection of the `outside` engine (no transaction), for Core statements, as
    SQLAlchemy's AsyncConnection but cheaper: taken from the pool by its first statement, in
    that statement's greenlet, and given back at the end of the block in one more. The
    AsyncConnection spends a greenlet on the checkout and, on the return, a task and another
    greenlet, each greenlet a fresh Python frame stack that the interpreter maps and unmaps:
    0.1-0.15 ms of CPU a one-row read here, a quarter of it (docs/performance.md).

    Both run in SQLAlchemy's own bridge to the event loop (`greenlet_spawn`, what its
    AsyncConnection runs on). The return is not shielded from cancellation as the
    AsyncConnection's is: on PostgreSQL it never waits (autocommit: nothing to roll back); on
    SQLite a cancellation is thrown into its greenlet, and the pool still gets its connection
    back (tests/test_database.py)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine.sync_engine
        self._connection: Connection | None = None

    async def __aenter__(self) -> OutsideConnection:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await greenlet_spawn(connection.close)

    @overload
    async def execute(
        self, statement: TypedReturnsRows[*_Row], parameters: Any = None
    ) -> CursorResult[*_Row]: ...

    @overload
    async def execute(
        self, statement: Executable, parameters: Any = None
    ) -> CursorResult[*tuple[Any, ...]]: ...

    async def execute(
        self, statement: Executable, parameters: Any = None
    ) -> CursorResult[*tuple[Any, ...]]:
        """The statement's result, its rows already fetched (the drivers buffer them)."""
        return await greenlet_spawn(self._execute, statement, parameters)

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any:
        return (await self.execute(statement, parameters)).scalar()

    def _execute(self, statement: Executable, parameters: Any) -> CursorResult[*tuple[Any, ...]]:
        if self._connection is None:
            self._connection = self._engine.connect()
        return self._connection.execute(statement, parameters)


# What a unit of work's Core statements run on: a session, or a connection (Sessions.connect).
Executor = AsyncSession | OutsideConnection

# True within a SQLite unit of work that writes (Sessions.begin), in its task.
_writing: ContextVar[bool] = ContextVar("writing", default=False)


@dataclass(frozen=True)
class Database:
    settings: BackendSettings
    engine: AsyncEngine
    sessions: Sessions
    passwords: Passwords
    seeds: SeedCipher
    sms_codes: SmsCodes
    sms_sender: SmsSender
    _after_reply: set[asyncio.Task[Any]] = field(default_factory=set)

    def now(self) -> datetime:
        return self.settings.clock()

    def after_reply(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` on its own, the request's reply not waiting for it (a bundle's
        confirmation SMS: a provider may take seconds, the caller's next prompt needs nothing
        of it). The database is closed only once it is done."""
        task = asyncio.create_task(work)
        self._after_reply.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._after_reply.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.error("after_reply_failed", error=type(error).__name__)

    async def replied_work_done(self) -> None:
        """Wait for all the work after_reply started, and any it started in turn."""
        while self._after_reply:
            await asyncio.gather(*self._after_reply, return_exceptions=True)


@asynccontextmanager
async def open_database(
    settings: BackendSettings, sms_sender: SmsSender | None = None
) -> AsyncIterator[Database]:
    """Connect, upgrade the schema to the newest migration, and dispose of the pool on exit.
    SMS go through `sms_sender`, by default the one `settings.sms_sender` names."""
    engine, outside = make_engines(settings.database_url, settings.database_connections)
    try:
        await upgrade_schema(engine)
        database = Database(
            settings=settings,
            engine=engine,
            # expire_on_commit=False: objects stay readable after commit, for building replies.
            sessions=Sessions(engine, outside, expire_on_commit=False),
            passwords=Passwords(settings.argon2_profile),
            seeds=SeedCipher(settings.secret_key),
            sms_codes=SmsCodes(settings.secret_key),
            sms_sender=sms_sender or sender_for(settings.sms_sender, settings.sms_gateway),
        )
        try:
            yield database
        finally:  # each within IVRS_SMS_SEND_SECONDS: a stop waits for no more than that
            await database.replied_work_done()
    finally:
        await dispose(engine, outside)


async def unused_number(
    session: AsyncSession, column: InstrumentedAttribute[str], new: Callable[[], str]
) -> str:
    """A fresh random number not yet in `column`. Random numbers are not guessable from one
    another; the unique constraint still guards the (tiny) window between check and insert."""
    taken = _number_taken(column)
    while True:
        number = new()
        if await session.scalar(taken, {"number": number}) is None:
            return number


@cache
def _number_taken(column: InstrumentedAttribute[str]) -> Select[str]:
    """Built once per column (see call_logs)."""
    return select(column).where(column == bindparam("number"))


async def upgrade_schema(engine: AsyncEngine) -> None:
    """Bring the database to the head revision, in one transaction; a no-op when it is there."""
    async with engine.connect() as connection:
        await connection.execution_options(**{SQLITE_BEGIN: None})  # _migrate begins itself
        await connection.run_sync(_upgrade)


def alembic_config() -> Config:
    """backend/alembic.ini; its env.py takes the database from IVRS_DATABASE_URL, or the
    connection given in `config.attributes["connection"]`."""
    return Config(ALEMBIC_INI)


@cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _upgrade(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # SQLite's migrations copy a table and drop the original (batch mode): foreign keys
        # are checked once, at the end, instead. They cannot be switched within a transaction.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    try:
        with connection.begin():
            _migrate(connection)
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


def _migrate(connection: Connection) -> None:
    """Within one transaction that first takes the database's migration lock, so that
    processes starting together migrate one after the other and the later ones find the head."""
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # The driver would otherwise run each DDL statement in a transaction of its own.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    current = MigrationContext.configure(connection).get_current_revision()
    if current is not None and current == head_revision():
        return  # the usual start: nothing to read or run
    config = alembic_config()
    config.attributes["connection"] = connection
    if current is None and _adopt(connection):
        command.stamp(config, "head")
        return
    command.upgrade(config, "head")
    if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").first()):
        raise RuntimeError(f"the migration left rows without their parent: {tuple(broken)}")


def _adopt(connection: Connection) -> bool:
    """A database made by `create_all` before there were migrations: stamped as the head
    revision when its schema is exactly the models' (so the head's), refused otherwise."""
    existing = set(inspect(connection).get_table_names()) & set(Base.metadata.tables)
    if not existing:
        return False  # an empty database: the migrations create everything
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    if diff := compare_metadata(context, Base.metadata):
        raise RuntimeError(
            "The database has tables but no Alembic revision, and they differ from the models "
            f"({len(diff)} differences, e.g. {diff[0]!r}): migrate or recreate it by hand."
        )
    log.warning("database_adopted", revision=head_revision())
    return True


def make_engines(url: str, connections: int = 5) -> tuple[AsyncEngine, AsyncEngine]:
    """The engine of units of work, and the one of the work outside transactions (Sessions),
    which begins none: on PostgreSQL an autocommit pool of its own, with at most `connections`
    too (asyncpg sends no BEGIN in autocommit); on SQLite the same pool, its connections sending
    no BEGIN at all (the driver's own BEGIN handling is off, see _sqlite_pragmas)."""
    engine = make_engine(url, connections)
    if engine.dialect.name == "sqlite":
        return engine, engine.execution_options(**{SQLITE_BEGIN: None})
    return engine, make_engine(url, connections, autocommit=True)


async def dispose(*engines: AsyncEngine) -> None:
    """Close the pools of make_engines' engines (SQLite's two share one: closed twice, no harm)."""
    for engine in engines:
        await engine.dispose()


def make_engine(url: str, connections: int = 5, autocommit: bool = False) -> AsyncEngine:
    """The app's engine for `url` (SQLite: WAL, busy timeout, foreign keys), with at most
    `connections` to it; a request waits for a free one (up to 30 s). `autocommit`
    (PostgreSQL): every connection outside transactions for good. Switching a connection of
    the other engine to autocommit and back, at its checkout and checkin, cost the backend
    0.1 ms of CPU each time (docs/performance.md).

    A unit of work holds its connection for a few milliseconds: more connections at once only
    contend in the database server. With SQLAlchemy's default (5, and 10 more opened as load
    rises), at 50 calls at once PostgreSQL spent 6-7 ms of CPU a call; with 4 connections,
    3.2-3.9, the calls no slower (docs/performance.md)."""
    database = make_url(url).database
    in_memory = make_url(url).get_backend_name() == "sqlite" and database in (None, "", ":memory:")
    # An in-memory SQLite database is one connection, not a pool.
    options: dict[str, Any] = {} if in_memory else {"pool_size": connections, "max_overflow": 0}
    if autocommit:
        options["isolation_level"] = "AUTOCOMMIT"
    # hide_parameters: SQL errors and logs never carry row values (hashes, seeds, inputs).
    engine = create_async_engine(url, hide_parameters=True, json_serializer=json_text, **options)
    if engine.dialect.name == "sqlite":
        if database and not in_memory:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            _owner_only(Path(database))
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _owner_only(path: Path) -> None:
    """The database file readable by its owner only (it holds password hashes, encrypted seeds
    and call logs); SQLite gives its -wal and -shm files the same mode."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists():
            file.chmod(0o600)


def _sqlite_begin(connection: Connection) -> None:
    """SQLAlchemy's recipe for SQLite transactions: the driver's own BEGIN handling is off
    (_sqlite_pragmas), and each transaction begins here, as its connection's SQLITE_BEGIN
    option says (BEGIN IMMEDIATE for writers, see Sessions)."""
    begin = connection.get_execution_options().get(SQLITE_BEGIN, "BEGIN")
    if begin is not None:
        connection.exec_driver_sql(begin)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers work during a write; the busy timeout makes concurrent writers queue
    instead of failing with 'database is locked'; SQLite checks foreign keys only when asked.
    The driver emits no BEGIN of its own (it would only at the first write): _sqlite_begin does."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    for attempt in range(SQLITE_WAL_ATTEMPTS):
        # Connections switching a new file to WAL together can deadlock; SQLite then fails
        # one at once, without waiting. Tried again, it waits for the other one's switch.
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == SQLITE_WAL_ATTEMPTS - 1:
                raise
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
