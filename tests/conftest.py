"""Shared fixtures: the real backend (HTTP on loopback, SQLite in a temp dir or PostgreSQL), the
real FastAGI server on a free port, and truckers with accounts, tokens and lodged cargo."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from backend import admin
from backend.app import RunningBackend, start_backend
from backend.database import Database, open_database
from backend.models import Bundle, Call
from backend.settings import BackendSettings
from backend.sms import MemorySender
from backend_client import BackendClient
from formats import keypad_keys
from ivr.server import RunningAgi, start_agi_server
from ivr.settings import IvrSettings
from simulator import CallRecord, place_call

# The database fixtures: `database_url` is SQLite, or PostgreSQL on a throwaway server.
pytest_plugins = ["tests.postgres"]


class TestClock:
    """The backend's clock in tests: real time to start with, moved on by the tests (a new
    token code each login, lockout periods) instead of sleeping."""

    def __init__(self) -> None:
        self._now = datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def sms() -> MemorySender:
    return MemorySender()


@pytest.fixture
def backend_settings(tmp_path: Path, clock: TestClock, database_url: str) -> BackendSettings:
    """SQLite, or PostgreSQL in modules that override `database` (tests/postgres.py)."""
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


class CountingBackendClient(BackendClient):
    """The real client, remembering which API paths the IVR asked for."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.requests: list[str] = []

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.requests.append(f"{method} {path}")
        return await super()._request(method, path, **kwargs)


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


@dataclass
class Trucker:
    account: str
    password: str
    seed: str
    ccrns: list[str]
    clock: TestClock
    vehicle: str = "AB1234"
    _token: pyotp.TOTP = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._token = pyotp.TOTP(self.seed, digits=6, interval=60)

    def code(self) -> str:
        """The code the token shows now; then the clock moves on one step, so the next login
        has a fresh code (a code once used is refused: replay)."""
        code = self._token.at(self.clock.now())
        self.clock.advance(60)
        return code

    @property
    def vehicle_keys(self) -> str:
        letters = "".join(keypad_keys(c) for c in self.vehicle if c.isalpha())
        return f"{letters}# {''.join(c for c in self.vehicle if c.isdigit())}#"

    def login_keys(self, password: str | None = None) -> str:
        # The 8-digit account number submits itself: no `#` after it.
        return f"{self.account} {password or self.password}# {{totp}}#"

    def bundle_keys(self, ccrn: str | None = None) -> str:
        """English, log in, bundle one CCRN to the vehicle, submit; silent after the receipt
        (the goodbye ends the call)."""
        return f"3 {self.login_keys()} {self.vehicle_keys} 1 {ccrn or self.ccrns[0]}# 1 2"


MakeTrucker = Callable[..., Any]


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


async def stored_bundles(db: Database) -> list[Bundle]:
    async with db.sessions() as session:
        return list(await session.scalars(select(Bundle)))


async def stored_call(db: Database, uniqueid: str) -> Call:
    async with db.sessions() as session:
        call = await session.scalar(select(Call).where(Call.uniqueid == uniqueid))
        assert call is not None, f"no call log for {uniqueid}"
        return call
