"""Fixtures and helpers of the console tests (tests/test_console*.py import them): the backend
with cookies allowed over plain HTTP (the tests talk to 127.0.0.1), one supervisor of each
role, HTTP clients that sign in as a browser does, and a second backend connected to a
simulated Asterisk manager (AMI). Calls seeded into the database and a real recording are
harness/console.py's."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from backend.app import RunningBackend, start_backend
from backend.console.auth import create_supervisor
from backend.console.listen import AMI
from backend.database import Database
from backend.settings import BackendSettings
from simulator import RunningAmi, place_call, start_ami_server

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ROLES = {"supervisor": "sam", "admin": "ada", "auditor": "otto"}


@pytest.fixture
def backend_settings(backend_settings: BackendSettings) -> BackendSettings:
    """The tests reach the console on http://127.0.0.1: cookies without Secure."""
    return replace(backend_settings, console_plain_http=True)


@pytest.fixture
async def supervisors(db: Database) -> dict[str, str]:
    """role -> name of a console user with that role (password PASSWORD)."""
    for role, name in ROLES.items():
        extension = "201" if role == "supervisor" else None
        await create_supervisor(db, name, role, PASSWORD, extension=extension)  # type: ignore[arg-type]
    return dict(ROLES)


@dataclass(frozen=True)
class Page:
    status: int
    text: str
    headers: CIMultiDictProxy[str]
    url: str


class ConsoleClient:
    """A browser's view of the console over HTTP: cookies kept, the CSRF token of the last
    page sent with each form."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def get(self, path: str, **options: Any) -> Page:
        async with self.http.get(self.url + path, **options) as response:
            return self._page(response, await response.text(errors="replace"))

    async def get_bytes(self, path: str, **options: Any) -> tuple[int, bytes, Any]:
        async with self.http.get(self.url + path, **options) as response:
            return response.status, await response.read(), response.headers

    async def post(
        self, path: str, data: dict[str, str] | None = None, csrf: bool = True, **options: Any
    ) -> Page:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        async with self.http.post(self.url + path, data=form, **options) as response:
            return self._page(response, await response.text(errors="replace"))

    async def sign_in(self, name: str, password: str = PASSWORD, next: str = "") -> Page:
        await self.get("/console/sign-in")
        return await self.post(
            "/console/sign-in", {"name": name, "password": password, "next": next}
        )

    def _page(self, response: aiohttp.ClientResponse, text: str) -> Page:
        if found := CSRF.search(text):
            self.csrf = found.group(1)
        return Page(response.status, text, response.headers, str(response.url))

    async def close(self) -> None:
        await self.http.close()


ConsoleFactory = Callable[..., Awaitable[ConsoleClient]]


@pytest.fixture
async def console(backend: Any, supervisors: dict[str, str]) -> AsyncIterator[ConsoleFactory]:
    """console(role) -> a client signed in with that role; console() -> not signed in."""
    clients: list[ConsoleClient] = []

    async def open_console(role: str | None = None) -> ConsoleClient:
        client = ConsoleClient(backend.url)
        clients.append(client)
        if role is not None:
            page = await client.sign_in(supervisors[role])
            assert page.status == 200 and "/console/calls" in page.url, page.text[:500]
        return client

    yield open_console
    for client in clients:
        await client.close()


@dataclass(frozen=True)
class WithAmi:
    ami: RunningAmi  # the simulated AMI: its `channels` are the calls Asterisk has
    backend: RunningBackend  # a second backend on the test's database, logged in to `ami`


@pytest.fixture
async def with_ami(backend: RunningBackend) -> AsyncIterator[WithAmi]:
    """A backend whose console has AMI configured (the `backend` fixture's has not)."""
    async with backend_with_ami(backend) as running:
        yield running


@contextlib.asynccontextmanager
async def backend_with_ami(
    backend: RunningBackend, write: frozenset[str] | None = None
) -> AsyncIterator[WithAmi]:
    """A second backend on `backend`'s database, logged in to a simulated AMI whose user may
    do `write` (None: manager.conf's `console` user, call, reporting and originate)."""
    ami = await start_ami_server(username="console", secret="ami-secret-1", write=write)
    settings = replace(
        backend.settings,
        ami_host="127.0.0.1",
        ami_port=ami.port,
        ami_username="console",
        ami_secret="ami-secret-1",
    )
    running = await start_backend(settings)
    try:
        connection = running.app[AMI]
        assert connection is not None and await connection.wait_ready(10)
        yield WithAmi(ami, running)
    finally:
        await running.stop()
        await ami.stop()


@contextlib.asynccontextmanager
async def on_asterisk(ami: RunningAmi, channel: str, **options: Any) -> AsyncIterator[None]:
    """A call on `ami`'s Asterisk, on this channel, in AGI() to a FastAGI server that holds it
    until the block ends: a channel the backend knows nothing of unless it is told."""
    connected, release = asyncio.Event(), asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()).strip():  # the agi_* lines
            pass
        connected.set()
        await release.wait()
        writer.close()  # AGI() ends: the simulator hangs the channel up

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    call = asyncio.create_task(
        place_call("127.0.0.1", port, channels=ami.channels, channel=channel, **options)
    )
    try:
        await asyncio.wait_for(connected.wait(), 10)
        yield
    finally:
        release.set()
        await call
        server.close()


async def call_api(backend: Any, path: str, body: dict[str, Any]) -> Any:
    """POST to the backend's JSON API as the IVR does (its service token)."""
    headers = {"Authorization": f"Bearer {backend.settings.api_token}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(backend.url + path, json=body, headers=headers) as response:
            assert response.status < 300, await response.text()
            return await response.json()
