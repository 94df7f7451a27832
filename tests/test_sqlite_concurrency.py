"""Concurrent writers on the embedded SQLite database: two backend processes' worth of writers
(two servers on one file, as `ivrs backend` and `ivrs admin` share it) write at once through
the HTTP API and none fails with "database is locked"; a reader is not held up by a writer;
a unit of work that writes cannot be begun inside another (it would wait for itself).

Each write transaction begins with BEGIN IMMEDIATE (backend/database.py): with SQLite's
default deferred BEGIN, a transaction that reads and then writes is refused at once when
another writer committed in between, whatever the busy timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from backend.app import RunningBackend, start_backend
from backend.database import Database
from backend.models import Call, CallEvent

CALLS_PER_SERVER = 40
EVENT_BATCHES = 3  # per call: each one reads the call, then inserts


@pytest.fixture
async def second_backend(backend: RunningBackend) -> AsyncIterator[RunningBackend]:
    """Another server (its own engine, pool and writer queue) on the same database file."""
    running = await start_backend(backend.settings, "127.0.0.1", 0)
    yield running
    await running.stop()


async def one_call(http: aiohttp.ClientSession, url: str, token: str, uniqueid: str) -> list[int]:
    """Open a call, post its events in batches, end it; the HTTP status of each request."""
    headers = {"Authorization": f"Bearer {token}"}
    statuses = []
    opening = {"uniqueid": uniqueid, "hotline": "39023333", "caller_id": "91234567"}
    async with http.post(f"{url}/v1/calls", json=opening, headers=headers) as reply:
        statuses.append(reply.status)
        call_id = (await reply.json())["call_id"]
    for batch in range(EVENT_BATCHES):
        event = {
            "at": datetime.now(UTC).isoformat(),
            "kind": "stage",
            "name": f"stage_{batch}",
            "detail": {"batch": batch},
        }
        path = f"{url}/v1/calls/{call_id}/events"
        async with http.post(path, json={"events": [event]}, headers=headers) as reply:
            statuses.append(reply.status)
    ending = {"outcome": "completed", "last_stage": "menu"}
    async with http.post(f"{url}/v1/calls/{call_id}/end", json=ending, headers=headers) as reply:
        statuses.append(reply.status)
    return statuses


async def stored(db: Database, model: type[Any]) -> int:
    async with db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


async def test_concurrent_writers_on_one_sqlite_file_never_fail_with_locked(
    backend: RunningBackend, second_backend: RunningBackend, db: Database
) -> None:
    token = backend.settings.api_token
    async with aiohttp.ClientSession() as http:
        replies = await asyncio.gather(
            *(
                one_call(http, server.url, token, f"sqlite-{n}-{i}")
                for i in range(CALLS_PER_SERVER)
                for n, server in enumerate((backend, second_backend))
            )
        )
    statuses = [status for call in replies for status in call]
    assert [s for s in statuses if s >= 300] == []
    calls = 2 * CALLS_PER_SERVER
    assert await stored(db, Call) == calls
    assert await stored(db, CallEvent) == calls * EVENT_BATCHES
    async with db.sessions() as session:
        ended = await session.scalar(select(func.count()).where(Call.ended_at.is_not(None)))
    assert ended == calls


async def test_a_reader_is_not_held_up_by_an_open_write(
    backend: RunningBackend, db: Database
) -> None:
    """WAL: readers read the last committed state while a writer holds the write lock."""
    headers = {"Authorization": f"Bearer {backend.settings.api_token}"}
    async with aiohttp.ClientSession() as http:
        opening = {"uniqueid": "reader-1", "hotline": "39023333"}
        async with http.post(f"{backend.url}/v1/calls", json=opening, headers=headers) as r:
            call_id = (await r.json())["call_id"]
        async with db.sessions.begin() as session:
            session.add(Call(uniqueid="writer-1", hotline="39023333", started_at=db.now()))
            await session.flush()  # the write lock is held until the block ends
            async with http.get(f"{backend.url}/v1/calls/{call_id}", headers=headers) as r:
                assert r.status == 200
                assert (await r.json())["uniqueid"] == "reader-1"
    assert await stored(db, Call) == 2


async def test_a_write_begun_inside_another_fails_at_once_instead_of_waiting_for_itself(
    db: Database,
) -> None:
    async with db.sessions.begin():
        with pytest.raises(RuntimeError, match="inside another"):
            async with db.sessions.begin():
                pass
    async with db.sessions.begin() as session:  # the queue is free again
        session.add(Call(uniqueid="after-1", hotline="39023333", started_at=db.now()))
    assert await stored(db, Call) == 1
