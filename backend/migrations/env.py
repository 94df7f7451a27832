"""Alembic's environment for the backend: the app's engine (backend.database.make_engine) on
the app's database URL, async throughout.

Two ways in:
- `backend.database.open_database` (the backend and `ivrs admin` at start) passes its own
  connection, already in a transaction, in `config.attributes["connection"]`;
- the `alembic -c backend/alembic.ini ...` command line, which connects to IVRS_DATABASE_URL
  as the backend does (backend.settings), or to `sqlalchemy.url` when a program sets it.

SQLite cannot ALTER most things in place: its migrations are rendered and run in batch mode
(copy and move), so one script serves both databases.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from backend.database import make_engine
from backend.models import Base, UtcDateTime
from backend.settings import DEFAULT_DATABASE_URL

config = context.config
target_metadata = Base.metadata


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Migrations spell out plain SQLAlchemy types: a migration must not change when the
    models' Python-side types do (UtcDateTime is a timezone-aware DateTime in the database)."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure(sqlite: bool, **options: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        render_item=render_item,
        compare_type=True,
        **options,
    )


def run_on(connection: Connection) -> None:
    configure(connection.dialect.name == "sqlite", connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or os.environ.get(
        "IVRS_DATABASE_URL", DEFAULT_DATABASE_URL
    )


async def run_online() -> None:
    engine = make_engine(database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_on)
            await connection.commit()
    finally:
        await engine.dispose()


def run_offline() -> None:
    """`alembic upgrade --sql`: the SQL script, for a DBA to read or run."""
    url = database_url()
    sqlite = make_url(url).get_backend_name() == "sqlite"
    configure(sqlite, url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


if config.cmd_opts is not None and config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_offline()
elif (shared := config.attributes.get("connection")) is not None:
    run_on(shared)
else:
    asyncio.run(run_online())
