"""Shared fixtures: the real backend (HTTP on loopback, SQLite in a temp dir or PostgreSQL), the
real FastAGI server on a free port, and truckers with accounts, tokens and lodged cargo."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from backend import admin
from backend.app import RunningBackend, start_backend
from backend.database import Database, open_database
from backend.settings import BackendSettings
from backend.sms import MemorySender
from ivr.server import RunningAgi, start_agi_server
from ivr.settings import IvrSettings
from simulator import CallRecord, place_call
from tests.support.servers import CountingBackendClient
from tests.support.truckers import MakeTrucker, TestClock, Trucker

# The database fixtures: `database_url` is SQLite, or PostgreSQL on a throwaway server.
pytest_plugins = ["tests.support.databases"]


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def sms() -> MemorySender:
    return MemorySender()


@pytest.fixture
def backend_settings(tmp_path: Path, clock: TestClock, database_url: str) -> BackendSettings:
    """SQLite, or PostgreSQL in modules that override `database` (tests/support/databases.py)."""
    return BackendSettings(
        clock=clock.now,
        database_url=database_url,
        api_token="test-" + secrets.token_hex(8),
        argon2_profile="test",
        secret_key=Fernet.generate_key(),
        recordings_dir=tmp_path / "recordings",
        port=0,
    )


@pytest.fixture
async def backend(
    backend_settings: BackendSettings, sms: MemorySender
) -> AsyncIterator[RunningBackend]:
    running = await start_backend(backend_settings, "127.0.0.1", 0, sms_sender=sms)
    yield running
    await running.stop()


@pytest.fixture
async def db(backend: RunningBackend) -> AsyncIterator[Database]:
    async with open_database(backend.settings) as database:
        yield database


@pytest.fixture
def backend_timeout() -> float:
    """How long the IVR waits for the backend; a module may override it."""
    return 2.0


@pytest.fixture
async def ivr(
    backend: RunningBackend, backend_timeout: float, tmp_path: Path
) -> AsyncIterator[RunningAgi]:
    settings = replace(
        IvrSettings(),
        backend_url=backend.url,
        api_token=backend.settings.api_token,
        backend_timeout=backend_timeout,
        agi_port=0,
        spool_dir=str(tmp_path / "spool"),  # never the repository's var/spool
    )
    client = CountingBackendClient(
        settings.backend_url, settings.api_token, settings.backend_timeout
    )
    running = await start_agi_server(settings, backend=client, port=0)
    running._owned.append(client)
    yield running
    await running.stop(grace=5)


@pytest.fixture
def make_trucker(db: Database, clock: TestClock) -> MakeTrucker:
    async def make(
        cargo: int = 2, token_expires: date = date(2029, 4, 30), **account: Any
    ) -> Trucker:
        number = str(secrets.randbelow(90_000_000) + 10_000_000)
        password = "246810"
        await admin.create_account(db, number, password, **account)
        seed = await admin.add_token(
            db, number, kind="hardware", digits=6, period=60, expires_on=token_expires
        )
        ccrns = [await admin.lodge_cargo(db) for _ in range(cargo)]
        return Trucker(number, password, seed, ccrns, clock)

    return make


@pytest.fixture
def phone(ivr: RunningAgi) -> Callable[..., Any]:
    """Place a simulated call to the test's FastAGI server."""

    async def call(keys: str, trucker: Trucker | None = None, **options: Any) -> CallRecord:
        if trucker is not None:
            options.setdefault("totp", trucker.code)
        return await place_call(ivr.host, ivr.port, keys=keys, **options)

    return call
