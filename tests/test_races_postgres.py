"""Races on PostgreSQL, the production database, end to end: 100 simulated calls over TCP to the
real FastAGI server, each a trucker of its own, racing to bundle one CCRN; and one submission
sent twice with one Idempotency-Key, over HTTP. The database decides (the partial unique index
on active bundle items, the unique idempotency key), and the callers hear who won."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
import pyotp
import pytest

from backend.app import RunningBackend
from prompts.say import slot_files
from tests.support.stored import stored_bundles
from tests.support.truckers import MakeTrucker, TestClock, Trucker

pytestmark = pytest.mark.slow  # a hundred simultaneous callers

CALLERS = 100
# This one process is the hundred callers, the FastAGI server and the backend, and the
# simulated callers key without pauses: the first requests of all calls reach the backend
# within milliseconds of one another, and the last in the queue waits seconds on this machine.
# The races are the point here, not latency (that is bench/'s): give the backend time.
BACKEND_TIMEOUT = 60.0


@pytest.fixture
def database() -> str:
    return "postgresql"


@pytest.fixture
def backend_timeout() -> float:
    return BACKEND_TIMEOUT


def token_code(trucker: Trucker, clock: TestClock) -> Any:
    """The trucker's current code, the clock left alone: a hundred callers log in at once, and
    Trucker.code would move the shared clock a step for each (their tokens differ: no replay)."""
    token = pyotp.TOTP(trucker.seed, digits=6, interval=60)
    return lambda: token.at(clock.now())


async def test_hundred_callers_racing_for_one_ccrn_make_one_bundle(
    make_trucker: MakeTrucker, phone: Any, db: Any, clock: TestClock
) -> None:
    first = await make_trucker(cargo=1)
    ccrn = first.ccrns[0]  # lodged once: every caller keys this one
    truckers = [first, *await asyncio.gather(*(make_trucker(cargo=0) for _ in range(CALLERS - 1)))]

    records = await asyncio.gather(
        *(phone(t.bundle_keys(ccrn), totp=token_code(t, clock)) for t in truckers)
    )

    heard = Counter(
        "submitted"
        if "bundle.submitted" in r.prompt_ids
        else "taken"
        if "bundle.ccrn_taken" in r.prompt_ids
        else "other: " + " ".join(r.prompt_ids[-3:])
        for r in records
    )
    assert heard == {"submitted": 1, "taken": CALLERS - 1}
    assert all(r.prompt_ids[-1] in ("call.goodbye", "call.too_many_errors") for r in records)
    bundles = await stored_bundles(db)
    assert len(bundles) == 1
    winner = next(r for r in records if "bundle.submitted" in r.prompt_ids)
    reference = slot_files("digits", bundles[0].reference, winner.language)
    assert tuple(reference) in winner.fragment_runs


async def test_one_submission_sent_twice_with_one_key_makes_one_bundle(
    make_trucker: MakeTrucker, backend: RunningBackend, db: Any
) -> None:
    trucker = await make_trucker(cargo=1)
    submission = {"account": trucker.account, "vehicle_mark": "AB1234", "numbers": trucker.ccrns}
    headers = {
        "Authorization": f"Bearer {backend.settings.api_token}",
        "Idempotency-Key": "1700000000.1:bundle-1",
    }

    async def send(http: aiohttp.ClientSession) -> tuple[int, Any]:
        async with http.post(f"{backend.url}/v1/bundles", json=submission, headers=headers) as r:
            return r.status, await r.json()

    async with aiohttp.ClientSession() as http:
        login = {"account": trucker.account, "password": trucker.password}
        login["token_code"] = trucker.code()
        async with http.post(f"{backend.url}/v1/sessions", json=login, headers=headers) as r:
            headers["Login-Session"] = (await r.json())["session"]["token"]
        together = await asyncio.gather(send(http), send(http))
        later = await send(http)

    assert sorted(status for status, _ in together) == [200, 201]
    assert later[0] == 200
    assert together[0][1] == together[1][1] == later[1]  # the same bundle, every time
    bundles = await stored_bundles(db)
    assert [b.reference for b in bundles] == [later[1]["reference"]]


async def test_one_end_sent_ten_times_at_once_stores_its_events_once(
    backend: RunningBackend,
) -> None:
    """A first end stores its events without reading which the call has: the UPDATE that ends
    the call locks its row, so the other deliveries wait for it, find the call ended, and
    store only what it lacks: nothing."""
    headers = {"Authorization": f"Bearer {backend.settings.api_token}"}
    events = [
        {"at": f"2025-03-03T10:00:{n:02d}+08:00", "kind": "prompt", "name": f"prompt{n}"}
        for n in range(40)
    ]
    end = {"outcome": "completed", "last_stage": "goodbye", "account": None, "events": events}
    async with aiohttp.ClientSession(base_url=backend.url, headers=headers) as http:
        opening = {"uniqueid": "1700000000.9", "hotline": "39023333"}
        async with http.post("/v1/calls", json=opening) as reply:
            call_id = (await reply.json())["call_id"]

        async def send() -> int:
            async with http.post(f"/v1/calls/{call_id}/end", json=end) as reply:
                return reply.status

        assert await asyncio.gather(*(send() for _ in range(10))) == [200] * 10
        async with http.get(f"/v1/calls/{call_id}") as reply:
            stored = (await reply.json())["events"]
    assert sorted(e["name"] for e in stored) == sorted(e["name"] for e in events)
