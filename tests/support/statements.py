"""The SQL a piece of work sends, counted where SQLAlchemy hands it to the driver (the
"before_cursor_execute" event): deterministic, unlike a timing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy

from backend.database import SQLITE_BEGIN, Database


@dataclass
class Sql:
    statements: list[str] = field(default_factory=list)  # verb and table: "UPDATE accounts"
    sent: list[str] = field(default_factory=list)  # every statement as sent, BEGIN included
    connections: int = 0  # taken from the pool: one a session
    transactions: int = 0  # begun (BEGIN and COMMIT: two more round trips on PostgreSQL)


@contextmanager
def sql_seen(db: Database) -> Iterator[Sql]:
    """What `db` sends meanwhile. BEGIN is left out: on PostgreSQL the driver sends its own,
    unseen here; a session is counted by the connection it takes instead."""
    seen = Sql()
    engines = backend_engines(db)

    def executed(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.sent.append(statement)
        if statement.startswith("WITH"):
            # PostgreSQL's statements that write in a WITH clause: what each part writes.
            # (An upsert's ON CONFLICT DO UPDATE is its INSERT's.)
            writes = re.findall(r"(?<!DO )\b(INSERT INTO|UPDATE|DELETE FROM)\s+(\w+)", statement)
            assert writes, statement
            parts = ", ".join(f"{verb.split()[0]} {table}" for verb, table in writes)
            seen.statements.append(f"WITH {parts}")
        elif not statement.startswith("BEGIN"):
            table = re.search(r"\b(?:INTO|UPDATE|FROM)\s+(\w+)", statement)
            assert table is not None, statement
            seen.statements.append(f"{statement.split()[0]} {table[1]}")

    def connected(*_args: Any) -> None:
        seen.connections += 1

    def began(connection: sqlalchemy.Connection) -> None:
        # Reads and one-statement writes begin none (backend.database.Sessions): PostgreSQL's
        # run on the autocommit engine, SQLite's without a BEGIN.
        options = connection.get_execution_options()
        if connection.engine is engines[0] and options.get(SQLITE_BEGIN, ""):
            seen.transactions += 1

    listeners = [(engine, "before_cursor_execute", executed) for engine in engines]
    listeners += [(engine.pool, "checkout", connected) for engine in engines]
    listeners += [(engines[0], "begin", began)]
    for target, name, listener in listeners:
        sqlalchemy.event.listen(target, name, listener)
    try:
        yield seen
    finally:
        for target, name, listener in listeners:
            sqlalchemy.event.remove(target, name, listener)


def backend_engines(db: Database) -> list[sqlalchemy.Engine]:
    """The engine of units of work and, if it is one of its own (PostgreSQL's autocommit
    engine, Sessions.outside), the engine of the work outside transactions."""
    main, outside = db.engine.sync_engine, db.sessions.outside.sync_engine
    return [main] if outside.pool is main.pool else [main, outside]
