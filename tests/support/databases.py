"""The database fixtures (a pytest plugin, tests/conftest.py): `database` ("sqlite" unless a
module overrides it, see DATABASES), `database_url` (the backend's URL for it, a fresh database
at the head revision), `postgres_server` and `sqlite_template` (session), `postgres_url` (one
test's PostgreSQL database). The server is harness/postgres.py's; SQLite gets the same as its
template: a file migrated once, copied for each test. Without PostgreSQL, the tests that need
it fail and say what to install; they are never skipped."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backend.database import make_engine, upgrade_schema
from harness.postgres import PostgresServer, PostgresUnavailable, start_postgres

# A module whose backend tests run on both overrides the `database` fixture with these:
#   @pytest.fixture(params=DATABASES)
#   def database(request: pytest.FixtureRequest) -> str:
#       return str(request.param)
DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server, started on first use. Never skipped: without
    PostgreSQL, the tests that need it fail and say what to install."""
    try:
        server = start_postgres()
    except PostgresUnavailable as e:
        unavailable = str(e)
    else:
        unavailable = ""
    if unavailable:
        pytest.fail(unavailable, pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def postgres_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A database of this test's own, at the head revision."""
    async with postgres_server.database() as url:
        yield url


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    """The backend's database, "sqlite" or "postgresql": SQLite unless the module overrides
    this fixture (params=DATABASES runs its tests on both)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the head revision once per session, as PostgreSQL's template:
    a test's database is a copy (a millisecond, where migrating takes tens)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"

    async def migrate() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await upgrade_schema(engine)
        finally:
            await engine.dispose()  # the last connection checkpoints the WAL into the file

    with ThreadPoolExecutor(1) as thread:  # a test's event loop may be running
        thread.submit(asyncio.run, migrate()).result()
    return path


@pytest.fixture
def database_url(database: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The backend's database URL: a SQLite file in the test's directory, or a PostgreSQL
    database of the test's own; either a copy of a template at the head revision."""
    if database == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    path = tmp_path / "ivrs.db"
    shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite+aiosqlite:///{path}"
