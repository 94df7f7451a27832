"""The Alembic migrations (backend/migrations) against the models, on SQLite and PostgreSQL:
an empty database upgraded to the head revision has exactly the models' schema (so a change to
backend/models.py without its migration fails here), downgrades undo it, concurrent starts
migrate once, and a database made by `create_all` before migrations is adopted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Connection,
    ForeignKeyConstraint,
    PrimaryKeyConstraint,
    UniqueConstraint,
    inspect,
    text,
)

from backend.database import alembic_config, head_revision, make_engine, upgrade_schema
from backend.models import Base
from harness.postgres import EMPTY, PostgresServer
from tests.support.databases import DATABASES


@pytest.fixture(params=DATABASES)
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database: not even the template's tables."""
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        async with server.database(template=EMPTY) as url:
            yield url
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"


def schema_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def run_command(connection: Connection, name: str, *args: Any) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    getattr(command, name)(config, *args)


async def test_the_head_revision_has_the_models_schema(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        await upgrade_schema(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(revision) == head_revision()
            assert await connection.run_sync(schema_diff) == []
    finally:
        await engine.dispose()


def constraint_names(connection: Connection) -> set[tuple[str, str, str | None]]:
    """(table, kind, name) of every primary key, unique constraint, foreign key and index."""
    found = inspect(connection)
    names: set[tuple[str, str, str | None]] = set()
    for table in set(found.get_table_names()) - {"alembic_version"}:
        names.add((table, "pk", found.get_pk_constraint(table)["name"]))
        names |= {(table, "uq", c["name"]) for c in found.get_unique_constraints(table)}
        names |= {(table, "fk", c["name"]) for c in found.get_foreign_keys(table)}
        # PostgreSQL lists the unique constraints' own indexes too: they are the constraints.
        names |= {
            (table, "ix", i["name"])
            for i in found.get_indexes(table)
            if not i.get("duplicates_constraint")
        }
    return names


def model_constraint_names() -> set[tuple[str, str, str | None]]:
    kinds = {PrimaryKeyConstraint: "pk", UniqueConstraint: "uq", ForeignKeyConstraint: "fk"}
    names: set[tuple[str, str, str | None]] = set()
    for table in Base.metadata.tables.values():
        for constraint in table.constraints:
            if kind := kinds.get(type(constraint)):
                names.add((table.name, kind, constraint.name))
        names |= {(table.name, "ix", index.name) for index in table.indexes}
    return names


async def test_every_constraint_and_index_has_the_name_of_the_convention(empty_url: str) -> None:
    """Names decided by the models' naming convention, the same on both databases, so a later
    migration can drop a constraint by its name (SQLite and PostgreSQL would name it apart)."""
    expected = model_constraint_names()
    assert all(name and name[:3] in ("pk_", "uq_", "fk_", "ix_") for _, _, name in expected)
    engine = make_engine(empty_url)
    try:
        await upgrade_schema(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(constraint_names) == expected
    finally:
        await engine.dispose()


async def test_downgrading_to_base_removes_everything_and_upgrading_rebuilds_it(
    empty_url: str,
) -> None:
    engine = make_engine(empty_url)
    try:
        await upgrade_schema(engine)
        async with engine.begin() as connection:
            await connection.run_sync(run_command, "downgrade", "base")
        async with engine.connect() as connection:
            assert await connection.run_sync(tables) <= {"alembic_version"}
            assert await connection.run_sync(revision) is None
        await upgrade_schema(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(schema_diff) == []
    finally:
        await engine.dispose()


# Tokens as 0002 stored them: an event (HOTP) token had period 0 and its last counter used in
# last_used_step (None: none used yet).
TOKENS_0002 = [
    {"serial": "HOTP-USED", "digits": 6, "period": 0, "drift": 0, "last_used_step": 6},
    {"serial": "HOTP-NEW", "digits": 8, "period": 0, "drift": 0, "last_used_step": None},
    {"serial": "TOTP", "digits": 6, "period": 60, "drift": 2, "last_used_step": 29_000_000},
]
TOKEN_COLUMNS = "serial, digits, period, drift, last_used_step"


def token_rows(connection: Connection, columns: str) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in connection.exec_driver_sql(f"SELECT {columns} FROM tokens ORDER BY serial")
    ]


async def test_event_tokens_of_0002_get_their_type_and_counter_and_get_them_back_on_downgrade(
    empty_url: str,
) -> None:
    engine = make_engine(empty_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_command, "upgrade", "0002")
            await connection.execute(
                text(
                    "INSERT INTO tokens (serial, kind, digits, period, seed_encrypted, drift,"
                    " last_used_step, status) VALUES (:serial, 'hardware', :digits, :period,"
                    " 'sealed', :drift, :last_used_step, 'active')"
                ),
                TOKENS_0002,
            )
        await upgrade_schema(engine)
        async with engine.connect() as connection:
            upgraded = await connection.run_sync(
                token_rows, "serial, type, period, counter, last_used_step, drift"
            )
        assert upgraded == [
            ("HOTP-NEW", "hotp", None, 0, None, 0),  # no press used yet: counter 0 comes next
            ("HOTP-USED", "hotp", None, 7, None, 0),  # counter 6 was used: 7 comes next
            ("TOTP", "totp", 60, None, 29_000_000, 2),
        ]
        async with engine.begin() as connection:
            await connection.run_sync(run_command, "downgrade", "0002")
        async with engine.connect() as connection:
            assert await connection.run_sync(token_rows, TOKEN_COLUMNS) == sorted(
                tuple(token.values()) for token in TOKENS_0002
            )
    finally:
        await engine.dispose()


async def test_backends_starting_together_migrate_once(empty_url: str) -> None:
    engines = [make_engine(empty_url) for _ in range(3)]
    try:
        await asyncio.gather(*(upgrade_schema(engine) for engine in engines))
        async with engines[0].connect() as connection:
            assert await connection.run_sync(revision) == head_revision()
            assert await connection.run_sync(schema_diff) == []
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_database_made_before_migrations_is_adopted(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        await upgrade_schema(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(revision) == head_revision()
    finally:
        await engine.dispose()


async def test_a_database_unlike_the_models_without_a_revision_is_refused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'odd.db'}")
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
            await connection.exec_driver_sql("DROP INDEX uq_bundle_items_active_ccrn")
        with pytest.raises(RuntimeError, match="no Alembic revision"):
            await upgrade_schema(engine)
        async with engine.connect() as connection:
            assert await connection.run_sync(revision) is None
    finally:
        await engine.dispose()


def test_the_alembic_command_line_uses_ivrs_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("IVRS_DATABASE_URL", url)
    command.upgrade(alembic_config(), "head")  # env.py's own engine, as `alembic upgrade` does

    async def check() -> None:
        engine = make_engine(url)
        try:
            async with engine.connect() as connection:
                assert await connection.run_sync(revision) == head_revision()
                assert await connection.run_sync(schema_diff) == []
        finally:
            await engine.dispose()

    asyncio.run(check())


def test_the_sql_for_postgresql_can_be_printed_offline(capsys: pytest.CaptureFixture[str]) -> None:
    config = alembic_config()
    config.set_main_option("sqlalchemy.url", "postgresql+asyncpg://ivrs@db.invalid/ivrs")
    command.upgrade(config, "head", sql=True)
    sql = capsys.readouterr().out
    assert "CREATE TABLE accounts" in sql
    assert (
        "CREATE UNIQUE INDEX uq_bundle_items_active_ccrn ON bundle_items (ccrn) WHERE active" in sql
    )
    assert "TIMESTAMP WITH TIME ZONE" in sql
